"""How a donor's defect pixels are blended into a target region: the project's one painting function.

:func:`blend_defect` composites the defect of a donor crop onto a target region of the same size,
in one of the :data:`BLENDS` modes:

* ``"none"``: the donor's defect pixels replace the target's (hard edge);
* ``"feather"``: the same with a feathered halo (Gaussian sigma ``feather`` px) around the defect;
* ``"poisson"``: gradient-domain (Poisson) blending, OpenCV ``seamlessClone`` with
  ``NORMAL_CLONE``: the donor's gradients inside the defect's neighbourhood, the target's level at
  its boundary (as in NSA, Schlüter et al., ECCV 2022);
* ``"poisson_mixed"``: the same with ``MIXED_CLONE``: at each pixel the stronger of the donor's and
  the target's gradients, so the target's texture shows through weak parts of the defect.

Whatever the mode, the result is labelled by :func:`changed_mask`: a pixel is a defect pixel
exactly when the blend changed it by at least :data:`CHANGE_THRESHOLD`, and every other pixel is
set back to the target bit for bit. So labels match pixels: outside the mask the image equals the
input, inside it every pixel really changed.

The ``none``/``feather`` composite is :func:`anomalib_defectgan.data.blending.paste_feathered`, the
batched composite that the defect-transfer GAN also uses, and :data:`CHANGE_THRESHOLD` is the same
constant as there: one painting rule and one labelling rule for the whole project.

Images are float in [0, 1]; ``target``/``donor`` ``[C, h, w]``, masks ``[1, h, w]`` in {0, 1}.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import Tensor

from anomalib_defectgan.data import blending as _rules

BLENDS = ("none", "feather", "poisson", "poisson_mixed")

#: A pixel counts as changed, hence as a defect pixel of the returned mask, when the mean absolute
#: change over channels is at least this (images in [0, 1]): 2 grey levels of an 8-bit image,
#: i.e. ``2.0 / 255.0``. Same object as :data:`anomalib_defectgan.data.blending.CHANGE_THRESHOLD`.
CHANGE_THRESHOLD: float = _rules.CHANGE_THRESHOLD

#: OpenCV's ``seamlessClone`` erodes the mask it is given by 3 px before solving (and, in
#: OpenCV 5, does so in place; a copy is passed). The defect mask is grown by this many px first,
#: so that the gradient domain still holds the defect plus a 2 px ring whose edge is the boundary.
POISSON_DILATION = 5

#: Reflect padding (px) added around target and donor before ``seamlessClone`` (cropped off after).
POISSON_PAD = POISSON_DILATION + 3

_CLONE_FLAGS = {"poisson": cv2.NORMAL_CLONE, "poisson_mixed": cv2.MIXED_CLONE}


def changed_mask(result: Tensor, target: Tensor, threshold: float = CHANGE_THRESHOLD) -> Tensor:
    """The pixels that a blend changed: mean ``|result - target|`` over channels ``>= threshold``.

    Args:
        result: ``[C, h, w]`` (or ``[B, C, h, w]``) blended image.
        target: Image before blending, same shape as ``result``.
        threshold: Smallest mean absolute change over channels that counts (images in [0, 1]).

    Returns:
        ``[1, h, w]`` (or ``[B, 1, h, w]``) float in {0, 1}, of ``result``'s dtype.

    Raises:
        ValueError: ``result`` and ``target`` differ in shape, or are not 3-D / 4-D.
    """
    if result.shape != target.shape or result.ndim not in (3, 4):
        raise ValueError(f"result and target must both be [C, h, w] or [B, C, h, w] of the same shape, got "
                         f"{tuple(result.shape)} and {tuple(target.shape)}")
    batched = result.ndim == 4
    changed = _rules.changed_mask(result if batched else result[None], target if batched else target[None],
                                  threshold)
    return (changed if batched else changed[0]).to(result.dtype)


def _check(target: Tensor, donor: Tensor, mask: Tensor, blend: str) -> None:
    if blend not in BLENDS:
        raise ValueError(f"blend must be one of {BLENDS}, got {blend!r}")
    if target.ndim != 3 or donor.shape != target.shape:
        raise ValueError(f"target and donor must both be [C, h, w] of the same shape, got {tuple(target.shape)} "
                         f"and {tuple(donor.shape)}")
    if mask.shape != (1, *target.shape[-2:]):
        raise ValueError(f"mask must be [1, h, w] = {(1, *target.shape[-2:])} like target, got {tuple(mask.shape)}")
    if blend in _CLONE_FLAGS and target.shape[0] not in (1, 3):
        raise ValueError(f"blend {blend!r} needs 1 or 3 channels, got {target.shape[0]}")
    if not bool((mask >= 0.5).any()):
        raise ValueError("mask is empty: there is no defect pixel to blend")


def _to_uint8(image: Tensor) -> np.ndarray:
    """``[C, h, w]`` float in [0, 1] -> ``[h, w, 3]`` uint8 (grey replicated to 3 channels)."""
    pixels = image.detach().to("cpu", torch.float64).clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8)
    array = pixels.permute(1, 2, 0).numpy()
    return np.ascontiguousarray(np.repeat(array, 3, axis=2) if array.shape[2] == 1 else array)


def _poisson(target: Tensor, donor: Tensor, mask: Tensor, mixed: bool) -> Tensor:
    """Poisson-blend ``donor`` into ``target`` through OpenCV, on a reflect-padded copy.

    ``seamlessClone`` needs the mask (and the region centred on its ``p``) strictly inside the
    image, so a defect at the crop's border would fail or be cut. Target and donor are therefore
    padded by :data:`POISSON_PAD` px (reflection; the mask by zeros), the defect mask is grown by
    :data:`POISSON_DILATION` px there, the clone is solved and the padding cropped off. Near the
    crop border the gradient domain thus reaches into the reflected margin, whose pixels are the
    boundary condition: the target's mirrored neighbourhood stands in for the unseen outside.
    Only pixels inside the grown mask may change; the change is applied to the unquantised target.
    """
    pad = POISSON_PAD
    dst, src = _to_uint8(target), _to_uint8(donor)
    binary = (mask[0] >= 0.5).detach().cpu().numpy().astype(np.uint8) * 255
    dst_big = np.pad(dst, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    src_big = np.pad(src, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    mask_big = np.pad(binary, pad, mode="constant")
    size = 2 * POISSON_DILATION + 1
    mask_big = cv2.dilate(mask_big, np.ones((size, size), np.uint8))
    x, y, w, h = cv2.boundingRect(mask_big)
    # src and dst are the same size: centring the clone on the mask's box keeps them aligned.
    flag = cv2.MIXED_CLONE if mixed else cv2.NORMAL_CLONE
    out = cv2.seamlessClone(src_big, dst_big, mask_big.copy(), (x + w // 2, y + h // 2), flag)
    height, width = binary.shape
    out = out[pad:pad + height, pad:pad + width].astype(np.float64)
    domain = torch.from_numpy(mask_big[pad:pad + height, pad:pad + width] > 0)
    delta = out - dst.astype(np.float64)
    if target.shape[0] == 1:
        delta = delta.mean(axis=2, keepdims=True)
    delta_t = torch.from_numpy(np.ascontiguousarray(delta.transpose(2, 0, 1)) / 255.0)
    painted = (target + delta_t.to(target.device, target.dtype)).clamp(0.0, 1.0)
    return torch.where(domain.to(target.device)[None], painted, target)


def blend_defect(target: Tensor, donor: Tensor, mask: Tensor, blend: str, feather: float = 2.0,
                 match_brightness: bool = True) -> Tensor:
    """Composite the donor's defect pixels onto a target region of the same size.

    Args:
        target: ``[C, h, w]`` float in [0, 1], the region painted on.
        donor: ``[C, h, w]`` float in [0, 1], the donor crop aligned with ``target``.
        mask: ``[1, h, w]`` in {0, 1} (values >= 0.5 count), the donor's defect pixels.
        blend: One of :data:`BLENDS` (see the module doc).
        feather: Gaussian sigma (px) of the halo of ``"feather"`` (ignored by the other modes).
        match_brightness: ``"none"``/``"feather"``: shift each donor channel so its mean outside
            the defect equals the target's mean. The Poisson modes ignore it: their solve takes the
            level from the target at the boundary of the gradient domain.

    Returns:
        ``[C, h, w]`` of ``target``'s dtype and device, in [0, 1]. It equals ``target`` bit for bit
        outside ``changed_mask(result, target)``, and every pixel inside changed by at least
        :data:`CHANGE_THRESHOLD`. The set may be empty (a defect that looks like the target).

    Raises:
        ValueError: ``mask`` is empty, shapes do not match, ``blend`` is unknown, or a Poisson
            mode gets a channel count other than 1 or 3.

    Example:
        >>> result = blend_defect(region, donor_crop, donor_mask, "poisson")
        >>> label = changed_mask(result, region)  # [1, h, w]: exactly the pixels that changed
    """
    _check(target, donor, mask, blend)
    binary = (mask >= 0.5).to(target.dtype)
    if blend in _CLONE_FLAGS:
        painted = _poisson(target, donor.to(target.dtype), binary, mixed=blend == "poisson_mixed")
    else:
        width = feather if blend == "feather" else 0.0
        painted = _rules.paste_feathered(target[None], donor.to(target.dtype)[None], binary[None], feather=width,
                                         match_brightness=match_brightness)[0][0].clamp(0.0, 1.0)
    changed = changed_mask(painted, target) > 0
    return torch.where(changed, painted, target)
