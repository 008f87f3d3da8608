"""How a donor's defect pixels are put onto a target: the project's one painting rule.

:func:`paste_feathered` is the batched, traceable composite of the defect-transfer GAN (training
and inference, exported to OpenVINO with it) and of ``CutPasteGenerator(blend="feather")``;
:func:`paste_change` is the GAN's other composite (``composite_mode="residual"``), which adds the
defect to the new material as a change against the donor's own background
(:func:`fill_from_surroundings`), with the donor's change optionally matched to the new material
(:func:`match_change`, ``composite_mode="matched"``).
:func:`changed_mask` is the one labelling rule: a pixel is a defect pixel of a synthetic image
exactly when the image changed there by at least :data:`CHANGE_THRESHOLD`.

Images are float ``[B, C, h, w]`` in [0, 1]; masks ``[B, 1, h, w]`` in {0, 1}.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

#: Mean absolute change over channels (images in [0, 1]) from which a pixel counts as changed,
#: i.e. as a defect pixel of a synthetic image: 2 grey levels of an 8-bit image.
CHANGE_THRESHOLD = 2.0 / 255.0

#: Blend weights below this are zero, so the composite equals the target bit for bit there.
ALPHA_EPS = 0.05


def _gaussian_kernel(sigma: float, radius: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    x = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def feather_alpha(mask: Tensor, feather: float) -> Tensor:
    """Blend weights ``[B, 1, h, w]``: 1 on the mask, a Gaussian halo of ``feather`` px around it.

    Zero padding (not reflection) keeps the halo from folding back at the crop border. Weights
    below :data:`ALPHA_EPS` are set to zero.
    """
    if feather <= 0:
        return mask
    radius = max(1, math.ceil(2 * feather))
    kernel = _gaussian_kernel(feather, radius, mask.dtype, mask.device)
    blurred = F.conv2d(F.pad(mask, (radius, radius, 0, 0)), kernel.view(1, 1, 1, -1))
    blurred = F.conv2d(F.pad(blurred, (0, 0, radius, radius)), kernel.view(1, 1, -1, 1))
    alpha = torch.maximum(mask, blurred)
    return torch.where(alpha >= ALPHA_EPS, alpha, torch.zeros_like(alpha))


def match_background(donor: Tensor, mask: Tensor, target: Tensor) -> Tensor:
    """Shift each donor channel so its mean outside the defect equals the target's mean.

    A donor crop that is all defect uses its whole mean instead.
    """
    background = 1.0 - mask
    count = background.sum(dim=(2, 3), keepdim=True)
    background = torch.where(count >= 1.0, background, torch.ones_like(background))
    donor_mean = (donor * background).sum(dim=(2, 3), keepdim=True) / background.sum(dim=(2, 3), keepdim=True)
    return donor - donor_mean + target.mean(dim=(2, 3), keepdim=True)


def paste_feathered(target: Tensor, donor: Tensor, mask: Tensor, feather: float = 2.0,
                    match_brightness: bool = True) -> tuple[Tensor, Tensor]:
    """Paste the donor's defect onto the target, brightness-matched, with a feathered edge.

    Args:
        target: ``[B, C, h, w]`` images to paint on.
        donor: ``[B, C, h, w]`` donor crops aligned with ``target``.
        mask: ``[B, 1, h, w]`` the donor's defect pixels.
        feather: Gaussian sigma (px) of the halo blended around the defect (0: a hard edge).
        match_brightness: Shift the donor so its background mean equals the target's mean.

    Returns:
        ``(composite, alpha)``: the composite (equal to ``target`` wherever ``alpha`` is 0) and
        the blend weights ``[B, 1, h, w]``.
    """
    painted = match_background(donor, mask, target) if match_brightness else donor
    alpha = feather_alpha(mask, feather)
    return target + alpha * (painted.clamp(0.0, 1.0) - target), alpha


def fill_from_surroundings(image: Tensor, known: Tensor) -> Tensor:
    """Fill the pixels of ``image`` where ``known`` is 0 from the known pixels around them (push-pull).

    A pyramid of masked averages is built down to 2 px and pulled back up bilinearly; known pixels
    are returned unchanged. The fill is smooth: a thin scratch is replaced by the material on both
    sides of it, a large blob by the mean of its rim. Fixed shapes only, so it traces for export.

    Args:
        image: ``[B, C, h, w]``.
        known: ``[B, 1, h, w]`` in {0, 1}: 1 where ``image`` is kept.
    """
    if min(image.shape[-2:]) <= 2:
        mean = (image * known).sum(dim=(2, 3), keepdim=True) / known.sum(dim=(2, 3), keepdim=True).clamp_min(1e-6)
        return known * image + (1.0 - known) * mean
    coarse_sum = F.avg_pool2d(image * known, 2, ceil_mode=True)
    coarse_known = F.avg_pool2d(known, 2, ceil_mode=True)
    coarse = fill_from_surroundings(coarse_sum / coarse_known.clamp_min(1e-6), (coarse_known > 0).to(image.dtype))
    up = F.interpolate(coarse, size=image.shape[-2:], mode="bilinear", align_corners=False)
    return known * image + (1.0 - known) * up


def blur(image: Tensor, sigma: float) -> Tensor:
    """Gaussian blur of ``[B, C, h, w]``, each channel on its own (torchvision's, reflected borders)."""
    from torchvision.transforms.v2.functional import gaussian_blur

    side = 2 * min(max(1, math.ceil(2 * sigma)), min(image.shape[-2:]) - 1) + 1
    return gaussian_blur(image, [side, side], [sigma, sigma]) if side > 1 else image


#: Gaussian sigma (px) that splits an image into texture (finer) and shading (coarser).
TEXTURE_SIGMA = 1.0
#: Gaussian sigma (px) of the window over which the donor's local texture energy is measured.
TEXTURE_WINDOW = 2.0


def texture_kept(donor: Tensor, alpha: Tensor) -> Tensor:
    """``[B, 1, h, w]`` in [0, 1]: how much of its material's texture the donor keeps at each pixel.

    The donor's local texture energy (detail finer than :data:`TEXTURE_SIGMA`, averaged over
    :data:`TEXTURE_WINDOW`) over its mean texture energy outside the defect (``alpha == 0``),
    clipped to 1: 1 in a crack network or on a scratch (the material is still there around them,
    and the defect adds detail), below 1 on a patch that replaced the material's grain.
    """
    detail = (donor - blur(donor, TEXTURE_SIGMA)).pow(2).mean(dim=1, keepdim=True)
    outside = (alpha == 0).to(donor.dtype)
    reference = (detail * outside).sum(dim=(2, 3), keepdim=True) / outside.sum(dim=(2, 3), keepdim=True).clamp_min(1.0)
    return (blur(detail, TEXTURE_WINDOW) / reference.clamp_min(1e-8)).clamp(0.0, 1.0)


#: Bounds of the factor by which :func:`match_change` rescales a donor's darkening: the local grey
#: level of the new material over the donor's, clipped to ``[1 / LEVEL_GAIN_LIMIT, LEVEL_GAIN_LIMIT]``.
LEVEL_GAIN_LIMIT = 2.0
#: Gaussian sigma (px) of the local grey level a darkening is scaled by.
LEVEL_SIGMA = 4.0
#: The donor's fine detail inside its change is shrunk towards zero by this many times the RMS of its
#: material's fine detail outside the defect (soft threshold), so its own grain is not carried over.
GRAIN_SHRINK = 1.0


def _masked_rms(image: Tensor, keep: Tensor) -> Tensor:
    """``[B, 1, 1, 1]``: root mean square of ``image`` over the pixels where ``keep`` is 1 (all channels)."""
    count = (keep.sum(dim=(1, 2, 3), keepdim=True) * image.shape[1]).clamp_min(1.0)
    return ((image.pow(2) * keep).sum(dim=(1, 2, 3), keepdim=True) / count).sqrt()


def match_change(change: Tensor, donor: Tensor, background: Tensor, target: Tensor, alpha: Tensor) -> Tensor:
    """The donor's change against its background, made to fit the target's material.

    Two corrections, both measured against the same defect rendered on the target's grade
    (``defectgan benchmark transfer-fidelity``; ``docs/design.md``, composite modes):

    1. **Darkening scales with the material's brightness.** A defect that absorbs light (an inclusion,
       a crack, a pit's floor) takes a fraction of the reflected light away, so the same defect
       darkens a bright grade by more grey levels than a dark one. Negative changes are multiplied
       by the target's local grey level over the donor's (both smoothed over :data:`LEVEL_SIGMA` px
       and filled in over the defect from around it), clipped to :data:`LEVEL_GAIN_LIMIT`.
       Brightening (bare metal, lit rims) is added as it is.
    2. **The donor's grain stays home.** The change's fine detail (finer than
       :data:`TEXTURE_SIGMA`) is soft-thresholded at :data:`GRAIN_SHRINK` times the RMS of the
       donor's fine detail outside the defect: a crack or a scratch edge is far above it and is
       kept, the donor material's grain inside the defect region is not painted over the target's.

    Args:
        change: ``[B, C, h, w]`` ``donor - background``.
        donor: ``[B, C, h, w]`` the donor crops.
        background: ``[B, C, h, w]`` the donor with the blended region filled in from around it.
        target: ``[B, C, h, w]`` the images painted on.
        alpha: ``[B, 1, h, w]`` the blend weights (0 outside the blended region).
    """
    outside = (alpha == 0).to(donor.dtype)
    detail = change - blur(change, TEXTURE_SIGMA)
    grain = _masked_rms(donor - blur(donor, TEXTURE_SIGMA), outside)
    change = change - detail + torch.sign(detail) * (detail.abs() - GRAIN_SHRINK * grain).clamp_min(0.0)
    target_level = fill_from_surroundings(blur(target, LEVEL_SIGMA), outside)
    gain = (target_level / background.clamp_min(1.0 / 255.0)).clamp(1.0 / LEVEL_GAIN_LIMIT, LEVEL_GAIN_LIMIT)
    return torch.where(change < 0, change * gain, change)


def paste_change(target: Tensor, donor: Tensor, mask: Tensor, feather: float = 2.0,
                 replace_texture: bool = False, match_material: bool = False) -> tuple[Tensor, Tensor]:
    """Add the donor's defect to the target as a change (``donor - background``), with a feathered edge.

    ``background`` is the donor with the blended region (the defect and its feathered halo) filled
    in from the material around it (:func:`fill_from_surroundings`). No donor background is
    pasted: the new material's texture and grey level show through the defect (no foreign plate
    around a thin scratch), the defect keeps its geometry pixel for pixel, and a dark defect on a
    dark grade is not shifted below black by a brightness match.

    Args:
        target: ``[B, C, h, w]`` images to paint on.
        donor: ``[B, C, h, w]`` donor crops aligned with ``target``.
        mask: ``[B, 1, h, w]`` the donor's defect pixels.
        feather: Gaussian sigma (px) of the halo over which the change fades out (0: a hard edge).
        replace_texture: Take the target's fine texture out where the donor's defect replaced its
            own material's grain (:func:`texture_kept`: a smoothed patch).
        match_material: Fit the change to the target's material first (:func:`match_change`).

    Returns:
        ``(composite, alpha)`` as :func:`paste_feathered`.
    """
    alpha = feather_alpha(mask, feather)
    background = fill_from_surroundings(donor, (alpha == 0).to(donor.dtype))
    change = donor - background
    if match_material:
        change = match_change(change, donor, background, target, alpha)
    if replace_texture:
        change = change - (1.0 - texture_kept(donor, alpha)) * (target - blur(target, TEXTURE_SIGMA))
    return (target + alpha * change).clamp(0.0, 1.0), alpha


#: How a composite-path GAN puts a donor's defect on a canvas before G refines it (:func:`composite`).
COMPOSITE_MODES = ("paste", "residual", "adaptive", "matched")


def composite(target: Tensor, donor: Tensor, mask: Tensor, mode: str, feather: float = 2.0) -> tuple[Tensor, Tensor]:
    """The donor's defect put on ``target`` by one of :data:`COMPOSITE_MODES`.

    ``"paste"``: :func:`paste_feathered` (the donor's pixels, brightness-matched); ``"residual"``:
    :func:`paste_change` (the defect's change against its own background); ``"adaptive"``: that
    change, with the target's grain taken out where the defect replaced its own (``replace_texture``);
    ``"matched"``: the adaptive change fitted to the target's material first (:func:`match_change`).

    Returns:
        ``(composite, alpha)`` as :func:`paste_feathered`.
    """
    if mode == "paste":
        return paste_feathered(target, donor, mask, feather)
    if mode not in COMPOSITE_MODES:
        raise ValueError(f"composite mode must be one of {COMPOSITE_MODES}, got {mode!r}")
    return paste_change(target, donor, mask, feather, replace_texture=mode in ("adaptive", "matched"),
                        match_material=mode == "matched")


def changed_mask(result: Tensor, target: Tensor, threshold: float = CHANGE_THRESHOLD) -> Tensor:
    """``[B, 1, h, w]`` bool: where the mean absolute change over channels is at least ``threshold``."""
    return (result - target).abs().mean(dim=1, keepdim=True) >= threshold


def dilate(mask: Tensor, pixels: int) -> Tensor:
    """Grow a ``[B, 1, h, w]`` mask by ``pixels`` (square structuring element)."""
    if pixels <= 0:
        return mask
    return F.max_pool2d(mask, 2 * pixels + 1, stride=1, padding=pixels)
