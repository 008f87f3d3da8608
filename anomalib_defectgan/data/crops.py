"""Crop sampling for GAN training: donor crops centred on a defect, random canvas crops, flips."""

from __future__ import annotations

import cv2
import numpy as np

FLIP_MODES = ("none", "rolling", "both")


def fit_to_crop(image: np.ndarray, mask: np.ndarray, crop: int) -> tuple[np.ndarray, np.ndarray]:
    """Upscale an image (and its mask) whose shorter side is below ``crop``; leave others alone."""
    height, width = image.shape[:2]
    if min(height, width) >= crop:
        return image, mask
    scale = crop / min(height, width)
    size = (max(crop, round(width * scale)), max(crop, round(height * scale)))
    resized = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    if resized.ndim == 2:
        resized = resized[..., None]
    return resized, cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)


def crop_window(shape: tuple[int, int], crop: int, centre: tuple[int, int]) -> tuple[int, int]:
    """Top-left corner of a ``crop`` x ``crop`` window around ``centre = (y, x)``, kept inside ``shape``."""
    top = int(np.clip(centre[0] - crop // 2, 0, shape[0] - crop))
    left = int(np.clip(centre[1] - crop // 2, 0, shape[1] - crop))
    return top, left


def donor_centre(mask: np.ndarray, rng: np.random.Generator, jitter: int) -> tuple[int, int]:
    """A random defect pixel, jittered by up to ``jitter`` px; the image centre when the mask is empty."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return mask.shape[0] // 2, mask.shape[1] // 2
    pick = rng.integers(len(ys))
    dy, dx = rng.integers(-jitter, jitter + 1, size=2) if jitter > 0 else (0, 0)
    return int(ys[pick] + dy), int(xs[pick] + dx)


def random_centre(shape: tuple[int, int], rng: np.random.Generator) -> tuple[int, int]:
    """A uniformly random pixel position."""
    return int(rng.integers(shape[0])), int(rng.integers(shape[1]))


def augment(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, flips: str, rolling_axis: str,
            rotate90: bool) -> tuple[np.ndarray, np.ndarray]:
    """Random flips (and optional 90-degree turns) applied identically to image and mask.

    Args:
        flips: ``none``; ``rolling`` mirrors along the rolling direction only (reverses the
            rolling direction, keeps striations parallel to it); ``both`` also mirrors across it.
        rolling_axis: ``horizontal`` (rolling along x) or ``vertical``.
        rotate90: Also turn by 90 degrees at random. Off by default: rolled steel is directional.
    """
    along = 1 if rolling_axis == "horizontal" else 0
    axes = [] if flips == "none" else [along] if flips == "rolling" else [0, 1]
    for axis in axes:
        if rng.random() < 0.5:
            image, mask = np.flip(image, axis), np.flip(mask, axis)
    if rotate90 and rng.random() < 0.5:
        image, mask = np.rot90(image, 1, (0, 1)), np.rot90(mask, 1, (0, 1))
    return np.ascontiguousarray(image), np.ascontiguousarray(mask)
