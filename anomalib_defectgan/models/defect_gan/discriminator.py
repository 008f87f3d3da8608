"""Discriminators: multi-task D, defect co-occurrence patch D, and the two leak adversaries."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from anomalib_defectgan.models.defect_gan.layers import (
    EqualConv2d,
    EqualLinear,
    ResidualDownBlock,
    channel_plan,
    grad_reverse,
)


@dataclass
class DiscriminatorOutput:
    """Adversarial logit of the given (class, grade) and the auxiliary head logits."""

    adversarial: Tensor
    class_logits: Tensor
    grade_logits: Tensor


class ResidualTrunk(nn.Module):
    """StyleGAN2-style residual trunk: ``image -> [B, features]`` for any size >= 8 * 2**blocks.

    Args:
        channels: Image channels.
        base_channels: Channels after the stem; doubled at each block.
        max_channels: Cap on channels.
        blocks: Number of halving residual blocks.
    """

    def __init__(self, channels: int, base_channels: int, max_channels: int, blocks: int) -> None:
        super().__init__()
        widths = channel_plan(base_channels, max_channels, blocks + 1)
        self.stem = EqualConv2d(channels, widths[0], 1, activation=True)
        self.blocks = nn.Sequential(*(ResidualDownBlock(widths[i], widths[i + 1]) for i in range(blocks)))
        self.final = EqualConv2d(widths[-1], widths[-1], 3, activation=True)
        self.out_features = widths[-1]

    def forward(self, image: Tensor) -> Tensor:
        """Features ``[B, out_features]`` of ``image`` in [0, 1]."""
        x = self.final(self.blocks(self.stem(image * 2.0 - 1.0)))
        return x.mean(dim=(2, 3))


def blocks_for(size: int, smallest: int = 4) -> int:
    """Halving blocks that bring ``size`` down to about ``smallest`` pixels."""
    return max(1, int(math.log2(max(size, 2 * smallest) // smallest)))


class MultiTaskDiscriminator(nn.Module):
    """One trunk; an adversarial logit per class (incl. good) plus a grade projection term, and
    auxiliary defect-class (FG) and grade (BG) heads.

    Args:
        channels: Image channels.
        num_classes: Classes including good.
        num_grades: Known grades.
        crop_size: Training crop size (sets the trunk depth).
        base_channels: Trunk width at full resolution.
        max_channels: Cap on trunk width.
    """

    def __init__(self, channels: int, num_classes: int, num_grades: int, crop_size: int, base_channels: int = 16,
                 max_channels: int = 128) -> None:
        super().__init__()
        self.trunk = ResidualTrunk(channels, base_channels, max_channels, blocks_for(crop_size))
        width = self.trunk.out_features
        self.hidden = EqualLinear(width, width, activation=True)
        self.adversarial = EqualLinear(width, num_classes)
        self.grade_projection = nn.Embedding(num_grades, width)
        nn.init.normal_(self.grade_projection.weight, std=1.0 / math.sqrt(width))
        self.class_head = EqualLinear(width, num_classes)
        self.grade_head = EqualLinear(width, num_grades)

    def forward(self, image: Tensor, defect_class: Tensor, grade: Tensor) -> DiscriminatorOutput:
        """Score ``image`` as a real image of ``(defect_class, grade)``."""
        h = self.hidden(self.trunk(image))
        adversarial = self.adversarial(h).gather(1, defect_class.long()[:, None]).squeeze(1)
        adversarial = adversarial + (self.grade_projection(grade) * h).sum(dim=1)
        return DiscriminatorOutput(adversarial, self.class_head(h), self.grade_head(h))


class CooccurrenceDiscriminator(nn.Module):
    """Defect co-occurrence patch discriminator (swapping autoencoder's patch D, aimed at defects).

    Says whether a query patch has the same defect appearance as a set of reference patches.

    Args:
        channels: Image channels.
        patch_size: Side of the patches.
        base_channels: Patch encoder width.
        max_channels: Cap on width.
    """

    def __init__(self, channels: int, patch_size: int, base_channels: int = 16, max_channels: int = 128) -> None:
        super().__init__()
        self.encoder = ResidualTrunk(channels, base_channels, max_channels, blocks_for(patch_size))
        width = self.encoder.out_features
        self.head = nn.Sequential(EqualLinear(2 * width, width, activation=True), EqualLinear(width, 1))

    def forward(self, query: Tensor, reference: Tensor) -> Tensor:
        """Logits ``[B*Q]`` for query patches ``[B, Q, C, P, P]`` against references ``[B, R, C, P, P]``."""
        b, q = query.shape[:2]
        query_features = self.encoder(query.flatten(0, 1))
        reference_features = self.encoder(reference.flatten(0, 1)).view(b, reference.shape[1], -1).mean(dim=1)
        pairs = torch.cat([query_features, reference_features.repeat_interleave(q, dim=0)], dim=1)
        return self.head(pairs).squeeze(1)


class LeakAdversary(nn.Module):
    """A small MLP reading a label from a code through gradient reversal.

    The adversary learns to predict the label; the reversed gradient teaches the encoder to make
    the code useless for it (no defect class in ``z_t``, no grade in ``z_d``).

    Args:
        in_features: Code size.
        num_labels: Label vocabulary size.
        hidden: Hidden width.
    """

    def __init__(self, in_features: int, num_labels: int, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(EqualLinear(in_features, hidden, activation=True), EqualLinear(hidden, num_labels))

    def forward(self, code: Tensor) -> Tensor:
        """Label logits; the gradient into ``code`` is reversed."""
        return self.net(grad_reverse(code))


def sample_patches(image: Tensor, weight: Tensor, count: int, patch_size: int,
                   generator: torch.Generator | None = None) -> Tensor:
    """Cut ``count`` patches per image centred at pixels drawn from ``weight`` (e.g. a defect mask).

    Indexing only (no interpolation), so it is exact and cheap to differentiate on a CPU. Centres
    are moved inwards where needed so every patch lies inside the image.

    Args:
        image: ``[B, C, H, W]`` with H, W >= ``patch_size``.
        weight: ``[B, 1, H, W]`` non-negative; where patches are centred. A tiny uniform floor
            keeps empty masks valid.
        count: Patches per image.
        patch_size: Side of each patch.
        generator: Random generator for the centres.

    Returns:
        ``[B, count, C, patch_size, patch_size]``.
    """
    b, _, h, w = image.shape
    probs = weight.detach().float().flatten(1).clamp_min(0) + 1e-6
    index = torch.multinomial(probs, count, replacement=True, generator=generator)  # [B, count]
    half = patch_size // 2
    top = ((index // w) - half).clamp(0, h - patch_size)
    left = ((index % w) - half).clamp(0, w - patch_size)
    offsets = torch.arange(patch_size, device=image.device)
    rows = (top[..., None] + offsets)[:, :, :, None]  # [B, count, P, 1]
    cols = (left[..., None] + offsets)[:, :, None, :]  # [B, count, 1, P]
    batch = torch.arange(b, device=image.device)[:, None, None, None]
    patches = image.permute(0, 2, 3, 1)[batch, rows, cols]  # [B, count, P, P, C]
    return patches.permute(0, 1, 4, 2, 3)
