"""One image of the steel world: a clean grade surface, optionally with one defect instance.

The mask is exactly the set of pixels the defect changed: ``|defect - clean| > MASK_THRESHOLD``
grey levels (of 255) in some channel of the 8-bit images, closed with a 3x3 cross to join pixels
a hair apart.
Outside the mask the defect image is reset to the clean render, so it equals it exactly.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import cv2
import numpy as np

from anomalib_defectgan.data.steel_world.defects import DEFECTS, DefectLayer
from anomalib_defectgan.data.steel_world.grades import GRADES, Grade

MASK_THRESHOLD = 2  # grey levels; a pixel belongs to the mask when it changed by more than this
MIN_MASK_PIXELS = 4  # a defect smaller than this is re-drawn
MAX_ATTEMPTS = 20
_CLOSE = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


@dataclass(frozen=True)
class SteelSample:
    """One rendered image.

    Attributes:
        image: ``uint8 [H, W, C]``, the image as written to disk.
        clean: ``uint8 [H, W, C]``, the same surface without the defect (equal to ``image`` for good).
        mask: ``bool [H, W]``, the changed pixels (all False for good).
        grade: Grade name.
        defect_class: Class name, ``'good'`` for good.
    """

    image: np.ndarray
    clean: np.ndarray
    mask: np.ndarray
    grade: str
    defect_class: str


def _name_key(name: str) -> int:
    return zlib.crc32(name.encode())


def _rng(seed: int, *parts: str | int) -> np.random.Generator:
    """A generator that depends only on the seed and the names/indices that identify a draw."""
    key = [part % 2**64 if isinstance(part, int) else _name_key(part) for part in (int(seed), *parts)]
    return np.random.default_rng(np.random.SeedSequence(key))


def _to_pixels(grey: np.ndarray, grade: Grade, channels: int) -> np.ndarray:
    if channels == 1:
        return np.clip(np.round(grey), 0, 255).astype(np.uint8)[..., None]
    rgb = grey[..., None] * np.asarray(grade.tint, np.float32)
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def render_background(grade: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A clean surface of ``grade`` as ``float32`` grey levels ``[size, size]`` (not clipped)."""
    return GRADES[grade].render(rng, (size, size))


def composite(clean: np.ndarray, layer: DefectLayer, grade: str) -> np.ndarray:
    """Paint a defect layer onto a clean ``float32`` grey surface of ``grade`` (returns a new array)."""
    spec = GRADES[grade]
    x0, y0, x1, y1 = layer.box
    out = clean.copy()
    region = clean[y0:y1, x0:x1]
    if layer.smooth is not None:
        local_mean = cv2.GaussianBlur(region, (0, 0), 3.0 * max(1.0, clean.shape[0] / 256),
                                      borderType=cv2.BORDER_REFLECT)
        region = region + layer.smooth * (local_mean - region)
    out[y0:y1, x0:x1] = (region * layer.albedo * (1.0 - layer.expose) + spec.metal * layer.expose
                         + spec.shade_gain * layer.shade)
    return out


def changed_mask(clean: np.ndarray, painted: np.ndarray) -> np.ndarray:
    """Pixels of two ``uint8 [H, W, C]`` images differing by more than :data:`MASK_THRESHOLD` grey
    levels in some channel, closed by a 3x3 cross."""
    diff = np.abs(painted.astype(np.int16) - clean.astype(np.int16)).max(axis=2)
    raw = (diff > MASK_THRESHOLD).astype(np.uint8)
    return cv2.morphologyEx(raw, cv2.MORPH_CLOSE, _CLOSE).astype(bool)


def render_good(grade: str, size: int, seed: int, index: int, channels: int = 1) -> SteelSample:
    """The ``index``-th defect-free image of ``grade`` for ``seed``."""
    grey = render_background(grade, size, _rng(seed, "good", grade, index))
    pixels = _to_pixels(grey, GRADES[grade], channels)
    return SteelSample(pixels, pixels, np.zeros((size, size), bool), grade, "good")


def render_defect(
    defect_class: str,
    size: int,
    seed: int,
    index: int,
    grades: list[str],
    channels: int = 1,
    instance_grade: str | None = None,
) -> list[SteelSample]:
    """Render one defect instance onto each of ``grades`` (same geometry, own backgrounds).

    Args:
        defect_class: One of :data:`DEFECTS`.
        size: Image side in pixels.
        seed: Dataset seed.
        index: Instance index within (``instance_grade``, ``defect_class``).
        grades: Grades to render onto; the first is the instance's own grade.
        channels: 1 or 3.
        instance_grade: Grade that owns the instance id (default ``grades[0]``).

    Returns:
        One :class:`SteelSample` per grade, in order. The geometry is re-drawn (up to
        :data:`MAX_ATTEMPTS` times) until every rendering changes at least
        :data:`MIN_MASK_PIXELS` pixels.
    """
    owner = instance_grade or grades[0]
    backgrounds = [render_background(g, size, _rng(seed, "canvas", owner, defect_class, index, g)) for g in grades]
    for attempt in range(MAX_ATTEMPTS):
        layer = DEFECTS[defect_class](_rng(seed, "defect", owner, defect_class, index, attempt), size)
        samples = []
        for grade, clean in zip(grades, backgrounds):
            clean_pixels = _to_pixels(clean, GRADES[grade], channels)
            painted = _to_pixels(composite(clean, layer, grade), GRADES[grade], channels)
            mask = changed_mask(clean_pixels, painted)
            if mask.sum() < MIN_MASK_PIXELS:
                break
            image = np.where(mask[..., None], painted, clean_pixels)
            samples.append(SteelSample(image, clean_pixels, mask, grade, defect_class))
        else:
            return samples
    raise RuntimeError(f"{defect_class} instance {index} of {owner}: no visible defect after {MAX_ATTEMPTS} draws")
