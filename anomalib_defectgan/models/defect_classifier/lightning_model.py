"""DefectClassifier: a supervised defect detector (score + anomaly map) as an anomalib model.

anomalib has no supervised learning type, so the model declares ``LearningType.ONE_CLASS``
(Engine, PostProcessor and export then work unchanged) and its ``training_step`` reads the
batch's ``gt_label`` and ``gt_mask``. Defects reach the training split through
:class:`anomalib_defectgan.data.DefectAugmented` (synthetic defects and/or real labelled ones).

Example:
    >>> from anomalib.engine import Engine
    >>> from anomalib.data import Folder
    >>> from anomalib.data.utils.generators import PerlinAnomalyGenerator
    >>> from anomalib_defectgan import DefectAugmented, DefectClassifier
    >>> data = DefectAugmented(Folder(name="steel", root="datasets/steel", normal_dir="train/good",
    ...                               abnormal_dir="test/scratch", mask_dir="ground_truth/scratch"),
    ...                        generator=PerlinAnomalyGenerator(probability=1.0))
    >>> Engine(max_epochs=10).fit(DefectClassifier(backbone="resnet18"), datamodule=data)  # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from anomalib import LearningType
from anomalib.data import Batch
from anomalib.metrics import AUROC, Evaluator, F1Score
from anomalib.models.components import AnomalibModule
from anomalib.post_processing import PostProcessor
from anomalib.pre_processing import PreProcessor
from anomalib.visualization import Visualizer
from lightning.pytorch.utilities.types import STEP_OUTPUT
from torch.optim import AdamW
from torchvision.transforms.v2 import Compose, Normalize, Resize

from .loss import DefectClassifierLoss
from .threshold import DefectPostProcessor
from .torch_model import DefectClassifierModel

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _size(image_size: int | list[int] | tuple[int, int] | None) -> tuple[int, int]:
    if image_size is None:
        return (256, 256)
    if isinstance(image_size, int):
        return (image_size, image_size)
    height, width = image_size
    return (int(height), int(width))


class DefectClassifier(AnomalibModule):
    """Supervised defect classifier with a segmentation decoder.

    Args:
        backbone: torchvision network: ``resnet18``, ``resnet50``, ``mobilenet_v3_large`` or
            ``efficientnet_b0``.
        pretrained: Start from torchvision's ImageNet weights. They are fetched once into
            ``$TORCH_HOME``; offline, put the file there or use ``weights_path``.
        weights_path: Local state dict (``.pth``) of the backbone network, loaded with
            ``weights_only=True``; overrides ``pretrained``.
        decoder_channels: Width of the segmentation decoder.
        image_size: Input size of the default pre-processor (Resize + ImageNet Normalize), an int
            or ``[height, width]``; ignored when a ``pre_processor`` object is given.
        score_loss: ``"bce"`` or ``"focal"`` on the image score.
        map_weight: Weight of the BCE + Dice map loss (0: image-level training only).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        pre_processor: Pre-processor instance or flag to use the default.
        post_processor: Post-processor instance or flag to use the default.
        evaluator: Evaluator instance or flag to use the default (image and pixel AUROC and F1).
        visualizer: Visualizer instance or flag to use the default.
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        pretrained: bool = False,
        weights_path: str | None = None,
        decoder_channels: int = 64,
        image_size: int | list[int] | None = None,
        score_loss: str = "bce",
        map_weight: float = 1.0,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        pre_processor: PreProcessor | bool = True,
        post_processor: PostProcessor | bool = True,
        evaluator: Evaluator | bool = True,
        visualizer: Visualizer | bool = True,
    ) -> None:
        if pre_processor is True:
            pre_processor = self.configure_pre_processor(_size(image_size))
        super().__init__(
            pre_processor=pre_processor,
            post_processor=post_processor,
            evaluator=evaluator,
            visualizer=visualizer,
        )
        self.model = DefectClassifierModel(
            backbone=backbone,
            pretrained=pretrained,
            weights_path=weights_path,
            decoder_channels=decoder_channels,
        )
        self.loss = DefectClassifierLoss(score_loss=score_loss, map_weight=map_weight)
        self.lr = lr
        self.weight_decay = weight_decay
        self._warned_maskless = False
        self._defects_seen = 0

    def training_step(self, batch: Batch, *args, **kwargs) -> STEP_OUTPUT:
        """Supervised step on ``gt_label`` and (where known) ``gt_mask``."""
        del args, kwargs
        images = batch.image
        labels = batch.gt_label.float().reshape(-1)
        if batch.gt_mask is None:
            masks = torch.zeros_like(images[:, :1])
        else:
            masks = batch.gt_mask.float().reshape(images.shape[0], 1, *images.shape[-2:])
        has_mask = masks.flatten(1).amax(1) > 0
        mask_known = (labels < 0.5) | has_mask
        maskless = int(((labels > 0.5) & ~has_mask).sum())
        if maskless and not self._warned_maskless and self.loss.map_weight > 0:
            self._warned_maskless = True
            warnings.warn(
                f"DefectClassifier: {maskless} defect image(s) in a training batch have no mask; such "
                "images train the score head only (image-level loss), the map loss uses the others. "
                "Give masks (e.g. Folder mask_dir) for pixel supervision. (Shown once.)",
                UserWarning, stacklevel=2)
        self._defects_seen += int((labels > 0.5).sum())
        score_logits, map_logits = self.model(images)
        loss, parts = self.loss(score_logits, map_logits, labels, masks, mask_known)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(images))
        for name, value in parts.items():
            self.log(f"train_{name}", value, on_step=False, on_epoch=True, batch_size=len(images))
        return {"loss": loss}

    def on_train_epoch_end(self) -> None:
        """Warn once when a whole epoch brought no defect: the score head then learns nothing useful."""
        if self._defects_seen == 0 and not getattr(self, "_warned_no_defects", False):
            self._warned_no_defects = True
            warnings.warn(
                "DefectClassifier: no defect images in a whole training epoch; wrap the datamodule in "
                "anomalib_defectgan.data.DefectAugmented (synthetic_ratio > 0 or real_defects_in_train > 0).",
                UserWarning, stacklevel=2)

    def validation_step(self, batch: Batch, *args, **kwargs) -> STEP_OUTPUT:
        """Add ``pred_score`` and ``anomaly_map`` to the batch."""
        del args, kwargs
        return batch.update(**self.model(batch.image)._asdict())

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the checkpoint's components; a component it switched off is detached from the trainer too.

        ``anomalib predict --ckpt_path`` builds the model from its defaults and Lightning attaches
        the model's callbacks (the visualizer among them) before it restores the checkpoint. anomalib
        then sets ``self.visualizer = None`` for a model trained with ``visualizer: false``, but the
        attached callback would still write overlay images.
        """
        attached = {name: getattr(self, name) for name in ("pre_processor", "post_processor", "evaluator", "visualizer")}
        super().on_load_checkpoint(checkpoint)
        dropped = [component for name, component in attached.items()
                   if component is not None and getattr(self, name) is None]
        if dropped and self._trainer is not None:
            self.trainer.callbacks = [c for c in self.trainer.callbacks if all(c is not d for d in dropped)]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """AdamW over all parameters."""
        return AdamW(self.model.parameters(), lr=self.lr, weight_decay=self.weight_decay)

    @property
    def trainer_arguments(self) -> dict[str, Any]:
        """No sanity validation (thresholds are fit on the real validation epoch)."""
        return {"num_sanity_val_steps": 0}

    @property
    def learning_type(self) -> LearningType:
        """ONE_CLASS, so anomalib's Engine and PostProcessor apply; training is in fact supervised."""
        return LearningType.ONE_CLASS

    @classmethod
    def configure_pre_processor(cls, image_size: tuple[int, int] | None = None) -> PreProcessor:
        """Resize + ImageNet Normalize: both allow-listed, so they are saved in checkpoints and exported."""
        return PreProcessor(transform=Compose([
            Resize(_size(image_size), antialias=True),
            Normalize(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD)),
        ]))

    @staticmethod
    def configure_post_processor() -> PostProcessor:
        """anomalib's post-processor, its image threshold centred in the validation gap (:mod:`.threshold`)."""
        return DefectPostProcessor()

    @staticmethod
    def configure_evaluator() -> Evaluator:
        """Image and pixel AUROC on validation; image and pixel AUROC and F1 on test."""
        val_metrics = [
            AUROC(fields=["pred_score", "gt_label"], prefix="image_"),
            AUROC(fields=["anomaly_map", "gt_mask"], prefix="pixel_", strict=False),
        ]
        test_metrics = [
            AUROC(fields=["pred_score", "gt_label"], prefix="image_"),
            F1Score(fields=["pred_label", "gt_label"], prefix="image_"),
            AUROC(fields=["anomaly_map", "gt_mask"], prefix="pixel_", strict=False),
            F1Score(fields=["pred_mask", "gt_mask"], prefix="pixel_", strict=False),
        ]
        return Evaluator(val_metrics=val_metrics, test_metrics=test_metrics)
