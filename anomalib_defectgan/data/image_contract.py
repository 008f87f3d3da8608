"""The pixel contract of images handed to a synthetic-defect generator: floats in [0, 1]."""

from __future__ import annotations

import math

import torch
from torch import Tensor

RANGE_TOLERANCE = 1e-3
"""How far outside [0, 1] a pixel may lie and still count as in range (resampling overshoot)."""


def check_pixel_range(images: Tensor, name: str = "images") -> None:
    """Refuse NaN, infinite and out-of-[0, 1] pixels with a message that says how to fix them.

    One min/max reduction, no copy. Values up to :data:`RANGE_TOLERANCE` outside [0, 1] pass
    (interpolating resizes overshoot by rounding); generators return the pixels outside a
    defect as they were, and clamp the painted ones to [0, 1].

    Args:
        images: Floating-point tensor of any shape (empty: nothing to check).
        name: What to call the tensor in the message.

    Raises:
        ValueError: A NaN or infinite value, or a value outside [0, 1].
    """
    if images.numel() == 0:
        return
    low, high = (float(v) for v in torch.aminmax(images.detach()))
    if low >= -RANGE_TOLERANCE and high <= 1 + RANGE_TOLERANCE:
        return
    if math.isnan(low) or math.isnan(high):
        raise ValueError(f"{name} hold NaN values: check the image loading and the transforms before the generator")
    if math.isinf(low) or math.isinf(high):
        raise ValueError(f"{name} hold infinite values: check the image loading and the transforms before the "
                         "generator")
    if low < -RANGE_TOLERANCE:
        raise ValueError(f"{name} hold values down to {low:.4g}, generators take floats in [0, 1]: apply the "
                         "generator before normalisation (e.g. ImageNet mean/std)")
    hint = "0-255 pixels: divide by 255" if high <= 255 + RANGE_TOLERANCE else "scale them to [0, 1]"
    raise ValueError(f"{name} hold values up to {high:.4g}, generators take floats in [0, 1]; {hint}")
