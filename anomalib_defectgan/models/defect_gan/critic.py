"""The critic V (the versatile classifier): defect class (FG) and grade (BG) from an image.

Trained on real crops before the GAN starts (:func:`train_critic`, run by the
:class:`CriticPretraining` callback), then frozen and used as a
critic for the generator. Generated defects are judged by a separate evaluator, not by V
(:mod:`anomalib_defectgan.benchmark.evaluator`, ``defectgan benchmark gan-quality``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from torch import Tensor, nn

from anomalib_defectgan.data.batch import GanBatch
from anomalib_defectgan.errors import DefectGanError


@dataclass
class ClassifierOutput:
    """Defect-class (foreground) and grade (background) logits."""

    class_logits: Tensor
    grade_logits: Tensor


class VersatileClassifier(nn.Module):
    """Small CNN with a defect-class head and a grade head.

    Args:
        channels: Image channels.
        num_classes: Classes including good.
        num_grades: Known grades.
        width: Channels of the first stage (doubled per stage, 4 stages).
    """

    def __init__(self, channels: int, num_classes: int, num_grades: int, width: int = 16) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = channels
        for stage in range(4):
            out_ch = width * 2**stage
            layers += [nn.Conv2d(in_ch, out_ch, 3, stride=1 if stage == 0 else 2, padding=1),
                       nn.GroupNorm(min(8, out_ch), out_ch), nn.LeakyReLU(0.2)]
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.class_head = nn.Linear(2 * in_ch, num_classes)
        self.grade_head = nn.Linear(2 * in_ch, num_grades)

    def forward(self, image: Tensor) -> ClassifierOutput:
        """Classify ``image`` ``[B, C, H, W]`` in [0, 1]."""
        x = self.features(image * 2.0 - 1.0)
        # mean pool for texture (grade), max pool for small local defects (class)
        pooled = F.adaptive_avg_pool2d(x, 1).flatten(1)
        peak = F.adaptive_max_pool2d(x, 1).flatten(1)
        h = torch.cat([pooled, peak], dim=1)
        return ClassifierOutput(self.class_head(h), self.grade_head(h))



def all_real(batch: GanBatch) -> tuple[Tensor, Tensor, Tensor]:
    """All real crops of a batch with their class (donors' class, good otherwise) and grade."""
    images = torch.cat([batch.donor.image, batch.canvas.image, batch.good.image])
    classes = torch.cat([batch.donor.defect_class, torch.zeros_like(batch.canvas.defect_class),
                         torch.zeros_like(batch.good.defect_class)])
    grades = torch.cat([batch.donor.grade, batch.canvas.grade, batch.good.grade])
    return images, classes, grades


def train_critic(critic: VersatileClassifier, batches: Iterable[GanBatch], steps: int, lr: float,
                 device: torch.device | str) -> float:
    """Train V on real crops (donors with their class, canvases and goods as good), then freeze it.

    Returns:
        V's defect-class accuracy on the last batch.
    """
    critic.requires_grad_(True).train()
    optimizer = torch.optim.Adam(critic.parameters(), lr=lr)
    accuracy = 0.0
    for _, batch in zip(range(steps), batches, strict=False):
        images, classes, grades = all_real(batch.to(device))
        out = critic(images)
        loss = F.cross_entropy(out.class_logits, classes) + F.cross_entropy(out.grade_logits, grades)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        accuracy = float((out.class_logits.argmax(1) == classes).float().mean())
    critic.requires_grad_(False).eval()
    return accuracy


def endless(loader: Iterable[GanBatch]) -> Iterator[GanBatch]:
    """The loader's batches, epoch after epoch, for V's steps (which need not fit in one epoch).

    Raises:
        DefectGanError: The loader yields nothing.
    """
    while True:
        yielded = False
        for batch in loader:
            yielded = True
            yield batch
        if not yielded:
            raise DefectGanError("the training dataloader is empty")


class CriticPretraining(Callback):
    """Train the GAN's critic V on real crops before its first iteration, once (not again on resume).

    The crops come from the training loader (epoch after epoch if ``steps`` exceeds one); under
    DDP rank 0's V is broadcast, so every rank judges with the same critic.

    Args:
        steps: V's training steps (0: no V critic).
    """

    def __init__(self, steps: int) -> None:
        self.steps = int(steps)

    def on_train_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        """Train ``pl_module``'s V (``train_classifier``) unless it is trained already."""
        if self.steps <= 0 or bool(pl_module.classifier_trained):
            return
        datamodule = getattr(trainer, "datamodule", None)
        pl_module.train_classifier(endless(datamodule.train_dataloader() if datamodule is not None
                                           else trainer.train_dataloader), self.steps)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            for tensor in [*pl_module.classifier.parameters(), *pl_module.classifier.buffers()]:
                torch.distributed.broadcast(tensor.data, src=0)
