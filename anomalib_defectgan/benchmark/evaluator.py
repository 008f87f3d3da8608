"""The independent evaluator of ``defectgan benchmark gan-quality``: a small CNN judge of real crops.

The evaluator is trained from scratch, in the run that uses it, on REAL crops of a manifest only
(its ``train`` split): defect rows give crops centred on a random defect pixel, good rows random
crops, at the generator's crop size and channel count. It has two heads, defect class (``good``
included) and grade, on one shared feature vector (global average pool of the last conv block);
that vector is the feature space of the Frechet distance. It is not the GAN's own auxiliary
classifier (``models/defect_gan/critic.py``): it never sees a generated image while training.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from anomalib_defectgan.data.crops import augment, crop_window, donor_centre, fit_to_crop, random_centre
from anomalib_defectgan.data.datamodule import ImageStore
from anomalib_defectgan.data.manifest import GOOD_CLASS


@dataclass
class CropSet:
    """Real crops with their labels.

    Attributes:
        images: ``[N, C, crop, crop]`` float in [0, 1].
        classes: ``[N]`` class ids (0 = good).
        grades: ``[N]`` grade ids.
    """

    images: Tensor
    classes: Tensor
    grades: Tensor

    def __len__(self) -> int:
        return len(self.images)


class CropSampler:
    """Cuts labelled crops from manifest rows (images kept in memory after the first read).

    Args:
        frame: Manifest rows (absolute paths).
        classes: Class vocabulary, ``good`` first.
        grades: Grade vocabulary.
        crop: Crop side in pixels.
        channels: 1 or 3.
    """

    def __init__(self, frame: pd.DataFrame, classes: Sequence[str], grades: Sequence[str], crop: int,
                 channels: int) -> None:
        self.frame = frame.reset_index(drop=True)
        self.store = ImageStore(self.frame, channels)
        self.crop = crop
        self.class_ids = self.frame["defect_class"].map({c: i for i, c in enumerate(classes)}).to_numpy()
        self.grade_ids = self.frame["grade"].map({g: i for i, g in enumerate(grades)}).to_numpy()
        self.is_defect = (self.frame["label"] == "defect").to_numpy()

    def __len__(self) -> int:
        return len(self.frame)

    def crop_row(self, row: int, rng: np.random.Generator, flips: str = "none") -> np.ndarray:
        """A ``uint8 [crop, crop, C]`` crop of row ``row``: centred on a defect pixel, or random for goods."""
        image, mask = fit_to_crop(*self.store(row), self.crop)
        centre = donor_centre(mask, rng, 0) if self.is_defect[row] and mask.any() else random_centre(mask.shape, rng)
        top, left = crop_window(mask.shape, self.crop, centre)
        image = image[top:top + self.crop, left:left + self.crop]
        mask = mask[top:top + self.crop, left:left + self.crop]
        return augment(image, mask, rng, flips, "horizontal", False)[0]

    def crops(self, rows: Sequence[int], rng: np.random.Generator, flips: str = "none") -> CropSet:
        """Crops of ``rows`` (a row may repeat) with their class and grade ids."""
        rows = list(rows)
        pixels = np.stack([self.crop_row(r, rng, flips) for r in rows]) if rows else \
            np.zeros((0, self.crop, self.crop, self.store.channels), np.uint8)
        images = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div_(255.0)
        return CropSet(images, torch.as_tensor(self.class_ids[rows], dtype=torch.long),
                       torch.as_tensor(self.grade_ids[rows], dtype=torch.long))


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class EvaluatorNet(nn.Module):
    """Small CNN with a shared feature vector and two linear heads (defect class, grade).

    Args:
        channels: Input channels.
        num_classes: Classes including ``good``.
        num_grades: Grades.
        width: Channels of the first block (doubled twice).
        feature_dim: Size of the feature vector (the Frechet space).
    """

    def __init__(self, channels: int, num_classes: int, num_grades: int, width: int = 16,
                 feature_dim: int = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _block(channels, width, 2),
            _block(width, 2 * width, 2), _block(2 * width, 2 * width, 1),
            _block(2 * width, 4 * width, 2), _block(4 * width, 4 * width, 1),
            nn.Conv2d(4 * width, feature_dim, 1), nn.ReLU(inplace=True),
        )
        self.class_head = nn.Linear(feature_dim, num_classes)
        self.grade_head = nn.Linear(feature_dim, num_grades)

    def features(self, images: Tensor) -> Tensor:
        """Penultimate features ``[B, feature_dim]`` (global average pool of the last block)."""
        return self.body(images * 2.0 - 1.0).mean(dim=(2, 3))

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(class logits, grade logits, features)``."""
        feats = self.features(images)
        return self.class_head(feats), self.grade_head(feats), feats


@dataclass
class Judgement:
    """What the evaluator says about a set of images.

    Attributes:
        classes: ``[N]`` predicted class ids.
        grades: ``[N]`` predicted grade ids.
        features: ``[N, D]`` float64 features.
    """

    classes: np.ndarray
    grades: np.ndarray
    features: np.ndarray


class Evaluator:
    """The trained judge: vocabularies plus the network.

    Args:
        net: The trained network (eval mode).
        classes: Class vocabulary, ``good`` first.
        grades: Grade vocabulary.
        crop: Input crop side.
        channels: Input channels.
        seconds: Training wall time.
    """

    def __init__(self, net: EvaluatorNet, classes: list[str], grades: list[str], crop: int, channels: int,
                 seconds: float = 0.0) -> None:
        self.net = net.eval()
        self.classes, self.grades = classes, grades
        self.crop, self.channels = crop, channels
        self.seconds = seconds

    @torch.no_grad()
    def judge(self, images: Tensor, batch_size: int = 64) -> Judgement:
        """Predicted class and grade ids and features of ``[N, C, crop, crop]`` images in [0, 1]."""
        classes, grades, feats = [], [], []
        for start in range(0, len(images), batch_size):
            class_logits, grade_logits, features = self.net(images[start:start + batch_size].float())
            classes.append(class_logits.argmax(1))
            grades.append(grade_logits.argmax(1))
            feats.append(features.double())
        if not classes:
            return Judgement(np.zeros(0, int), np.zeros(0, int), np.zeros((0, self.net.class_head.in_features)))
        return Judgement(torch.cat(classes).numpy(), torch.cat(grades).numpy(), torch.cat(feats).numpy())

    def accuracy(self, crops: CropSet, batch_size: int = 64) -> tuple[float, float]:
        """``(class accuracy, grade accuracy)`` on labelled crops (NaN for an empty set)."""
        if len(crops) == 0:
            return float("nan"), float("nan")
        found = self.judge(crops.images, batch_size)
        return (float(np.mean(found.classes == crops.classes.numpy())),
                float(np.mean(found.grades == crops.grades.numpy())))


def balanced_rows(sampler: CropSampler, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` rows: a class drawn uniformly (``good`` included), then a row of that class."""
    groups = [np.flatnonzero(sampler.class_ids == c) for c in np.unique(sampler.class_ids)]
    picks = rng.integers(len(groups), size=count)
    return np.array([groups[g][rng.integers(len(groups[g]))] for g in picks], dtype=int)


def train_evaluator(train: pd.DataFrame, classes: list[str], grades: list[str], crop: int, channels: int,
                    steps: int = 300, batch_size: int = 32, lr: float = 3e-3, seed: int = 0,
                    log_every: int = 100) -> Evaluator:
    """Train the evaluator from scratch on real crops of ``train`` (class-balanced batches, flips).

    Args:
        train: Manifest rows to learn from (real images only).
        classes: Class vocabulary, ``good`` first.
        grades: Grade vocabulary.
        crop: Crop side.
        channels: 1 or 3.
        steps: Optimiser steps.
        batch_size: Crops per step.
        lr: Adam learning rate (cosine-decayed to zero).
        seed: Seed of the initial weights and of the crops.
        log_every: Print the running loss every this many steps (0: never).

    Returns:
        The trained :class:`Evaluator`.
    """
    if classes[0] != GOOD_CLASS:
        raise ValueError(f"the class vocabulary must start with {GOOD_CLASS!r}, got {classes}")
    started = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng([seed, 17])
    sampler = CropSampler(train, classes, grades, crop, channels)
    net = EvaluatorNet(channels, len(classes), len(grades))
    optimiser = torch.optim.Adam(net.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: 0.5 * (1 + np.cos(np.pi * s / max(steps, 1))))
    net.train()
    running = 0.0
    for step in range(steps):
        batch = sampler.crops(balanced_rows(sampler, batch_size, rng), rng, flips="both")
        class_logits, grade_logits, _ = net(batch.images)
        loss = F.cross_entropy(class_logits, batch.classes) + F.cross_entropy(grade_logits, batch.grades)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        running = 0.9 * running + 0.1 * float(loss.detach()) if step else float(loss.detach())
        if log_every and (step + 1) % log_every == 0:
            print(f"  evaluator step {step + 1}/{steps}: loss {running:.3f}", flush=True)
    return Evaluator(net, classes, grades, crop, channels, time.perf_counter() - started)
