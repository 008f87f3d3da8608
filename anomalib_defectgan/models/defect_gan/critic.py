"""Versatile classifier V: defect class (FG) and grade (BG) from an image.

Trained on real crops before the GAN starts, then frozen and used as a critic for the generator.
Generated defects are judged by a separate evaluator, not by V
(:mod:`anomalib_defectgan.benchmark.evaluator`, ``defectgan benchmark gan-quality``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


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

