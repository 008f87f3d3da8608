"""Images and the synthetic-defect generator contract: one place for each rule.

* **Pixels**: floats in [0, 1] (:func:`check_pixel_range`).
* **Luminance**: ITU-R 601 weights :data:`GREY_WEIGHTS` (PIL's ``convert("L")``, which
  :func:`~anomalib_defectgan.data.image_io.read_image` uses for 1-channel reads);
  :func:`to_channels` converts tensors between 1 and 3 channels.
* **Channels of a folder of images**: :func:`image_channels` (3 when one of a spread of images has
  colour, 1 when they are all grey, whatever their file mode).
* **The generator call** (anomalib's Perlin contract): ``gen(images) -> (augmented, mask)``;
  ``images`` is ``[C, H, W]`` or ``[B, C, H, W]`` float in [0, 1] with C = 1 or 3; ``augmented``
  has the same shape, dtype and device; ``mask`` is ``[1, H, W]`` or ``[B, 1, H, W]`` float in
  {0, 1}. An image not chosen (``probability``) comes back unchanged with an empty mask; pixels
  outside the mask are never changed. Generators check their input with :func:`as_batch`;
  callers of a third-party generator check its output with :func:`check_generator_output`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from anomalib_defectgan.data.image_io import read_image
from anomalib_defectgan.errors import DefectGanError, ImageReadError

GREY_WEIGHTS = (0.299, 0.587, 0.114)
"""ITU-R 601 luminance weights of R, G, B (the same as PIL's ``convert("L")``)."""

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


def to_channels(images: Tensor, channels: int) -> Tensor:
    """Convert ``[B, C, H, W]`` between 1 (luminance, :data:`GREY_WEIGHTS`) and 3 (grey replicated) channels."""
    if images.shape[1] == channels:
        return images
    if channels == 1:
        weights = torch.tensor(GREY_WEIGHTS, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        return (images * weights).sum(dim=1, keepdim=True)
    return images.expand(-1, 3, -1, -1)


def image_channels(paths: Sequence[str | Path], limit: int = 8) -> tuple[int, str]:
    """3 when one of ``limit`` images spread over ``paths`` has colour, 1 when they are all grey.

    An RGB file whose three channels are equal counts as grey. Unreadable images are passed over
    (whoever reads them reports them).

    Returns:
        ``(channels, an example path)``: the first colour image, else the first readable image.

    Raises:
        ValueError: ``paths`` is empty.
        ImageReadError: None of the chosen images can be read.
    """
    if len(paths) == 0:
        raise ValueError("no images to tell the channel count from")
    picks = np.unique(np.linspace(0, len(paths) - 1, min(limit, len(paths))).round().astype(int))
    readable: list[str] = []
    first_error: ImageReadError | None = None
    for path in (str(paths[i]) for i in picks):
        try:
            pixels = read_image(path, channels=3).astype(np.int16)
        except ImageReadError as err:
            first_error = first_error or err
            continue
        if np.abs(pixels - pixels[..., :1]).max() > 0:
            return 3, path
        readable.append(path)
    if not readable and first_error is not None:
        raise first_error
    return 1, readable[0]


class GeneratorContractError(DefectGanError):
    """A synthetic-defect generator returned something outside the Perlin contract."""


def as_batch(images: Tensor) -> tuple[Tensor, bool]:
    """Check a generator's input and return it as ``[B, C, H, W]`` plus whether it was a single image.

    Args:
        images: ``[C, H, W]`` or ``[B, C, H, W]`` floating tensor, C = 1 or 3.

    Raises:
        TypeError: Not a floating-point tensor.
        ValueError: Wrong number of dimensions or channels, an empty image, or pixels that are
            NaN, infinite or outside [0, 1] (:func:`check_pixel_range`).
    """
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if not images.is_floating_point():
        raise TypeError(f"images must be floating point in [0, 1], got dtype {images.dtype}")
    if images.ndim not in (3, 4):
        raise ValueError(f"images must be [C, H, W] or [B, C, H, W], got shape {tuple(images.shape)}")
    single = images.ndim == 3
    batch = images.unsqueeze(0) if single else images
    if batch.shape[1] not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels, got shape {tuple(images.shape)}")
    if batch.shape[-2] == 0 or batch.shape[-1] == 0:
        raise ValueError(f"images must have a height and width of at least 1 pixel, got shape {tuple(images.shape)}")
    check_pixel_range(batch)
    return batch, single


def as_output(augmented: Tensor, mask: Tensor, single: bool) -> tuple[Tensor, Tensor]:
    """Undo :func:`as_batch`: drop the batch dimension again for a single input image."""
    return (augmented[0], mask[0]) if single else (augmented, mask)


def check_generator_output(name: str, source: Tensor, output: Any) -> tuple[Tensor, Tensor]:
    """Check what a generator returned for the batch ``source`` and return ``(augmented, mask)``.

    Args:
        name: What to call the generator in the message (e.g. its class name).
        source: The ``[B, C, H, W]`` batch it was given.
        output: What it returned.

    Raises:
        GeneratorContractError: Not a pair of tensors, a changed shape, a mask that is not
            ``[B, 1, H, W]`` in {0, 1}, or pixels that are NaN, infinite or outside [0, 1].
    """
    if not isinstance(output, (tuple, list)) or len(output) != 2:
        raise GeneratorContractError(f"generator {name} must return (augmented, mask), got {type(output).__name__}")
    augmented, mask = output
    if not isinstance(augmented, Tensor) or not isinstance(mask, Tensor):
        raise GeneratorContractError(f"generator {name} must return tensors, got "
                                     f"({type(augmented).__name__}, {type(mask).__name__})")
    batch, _, height, width = source.shape
    if tuple(augmented.shape) != tuple(source.shape):
        raise GeneratorContractError(f"generator {name} returned images of shape {tuple(augmented.shape)} "
                                     f"for input {tuple(source.shape)}; the shape must not change")
    if tuple(mask.shape) != (batch, 1, height, width):
        raise GeneratorContractError(f"generator {name} returned a mask of shape {tuple(mask.shape)}; "
                                     f"expected {(batch, 1, height, width)}")
    if not torch.isfinite(augmented).all():
        raise GeneratorContractError(f"generator {name} returned NaN or infinite pixels")
    low, high = float(augmented.min()), float(augmented.max())
    if low < -RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE:
        raise GeneratorContractError(f"generator {name} returned pixels in [{low:.3g}, {high:.3g}]; "
                                     "images must stay in [0, 1]")
    binary = (mask.float() - mask.float().round()).abs().max() <= RANGE_TOLERANCE
    if not bool(binary) or float(mask.min()) < 0 or float(mask.max()) > 1:
        raise GeneratorContractError(f"generator {name} returned a mask with values other than 0 and 1")
    return augmented, mask
