"""Clean (defect-free) surfaces of the steel grades.

Each grade differs in mean grey level, low-frequency mottling, fine grain and grain direction.
Rolling direction is horizontal (x). Geometric sizes are given for a 256 px image and scale with
the image size (the field of view is fixed); per-pixel grain stays per-pixel.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from anomalib_defectgan.data.steel_world.noise import (
    fractal_noise,
    grain,
    normalize,
    smooth_noise,
    smoothstep,
    white_noise,
)

Shape = tuple[int, int]


@dataclass(frozen=True)
class Grade:
    """How one grade looks and how defects show on it.

    Attributes:
        name: Grade name (manifest ``grade`` column, folder name).
        render: ``render(rng, shape) -> float32 grey levels`` (0..255 scale, not yet clipped).
        metal: Grey level of bare metal where a defect scrapes the surface open.
        shade_gain: Grey levels per unit of height slope (how strongly relief shows).
        tint: RGB factors used when rendering 3 channels.
    """

    name: str
    render: Callable[[np.random.Generator, Shape], np.ndarray]
    metal: float
    shade_gain: float
    tint: tuple[float, float, float]


def _hot_rolled(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    """Dark, blotchy black mill scale stretched along rolling, medium isotropic grain."""
    size = shape[0] / 256
    mottle = fractal_noise(rng, shape, (5.0, 2.0), octaves=4, persistence=0.55)
    scale_field = fractal_noise(rng, shape, (7.0, 3.0), octaves=3, persistence=0.6)
    black_scale = smoothstep(0.2, 0.9, scale_field)
    fine = grain(rng, shape, 0.7, 0.7)
    pits = grain(rng, shape, 1.6 * size + 0.4, 1.2 * size + 0.4)
    return 70.0 + 11.0 * mottle - 24.0 * black_scale + 6.0 * fine + 4.0 * pits


def _pickled(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    """Mid grey, matte: weak mottling, strong fine isotropic grain (acid-etched orange peel)."""
    size = shape[0] / 256
    mottle = fractal_noise(rng, shape, (3.0, 3.0), octaves=3, persistence=0.5)
    fine = grain(rng, shape, 0.6, 0.6)
    peel = grain(rng, shape, 1.8 * size + 0.3, 1.8 * size + 0.3)
    return 128.0 + 5.0 * mottle + 9.0 * fine + 6.0 * peel


def _cold_rolled(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    """Bright, fine striations along rolling (horizontal), faint long-wave sheen."""
    size = shape[0] / 256
    long_streaks = grain(rng, shape, 40.0 * size + 2.0, 0.6)
    short_streaks = grain(rng, shape, 8.0 * size + 1.0, 0.5)
    sheen = normalize(smooth_noise(rng, shape, (2.0, 1.0)))
    fine = grain(rng, shape, 0.5, 0.5)
    return 182.0 + 7.0 * long_streaks + 4.0 * short_streaks + 6.0 * sheen + 2.0 * fine


def _spangle_cells(rng: np.random.Generator, shape: Shape, cell: float) -> np.ndarray:
    """Voronoi labels ``[H, W]`` (0..n-1) of randomly placed crystal nuclei."""
    height, width = shape
    count = max(4, round(height * width / cell**2))
    seeds = np.ones(shape, np.uint8)
    ys = rng.integers(0, height, count)
    xs = rng.integers(0, width, count)
    seeds[ys, xs] = 0
    _, labels = cv2.distanceTransformWithLabels(seeds, cv2.DIST_L2, cv2.DIST_MASK_PRECISE,
                                                labelType=cv2.DIST_LABEL_PIXEL)
    return labels - 1


_DIRECTIONS = 3  # zinc dendrites grow at 60 degrees to each other


def _directional_kernels(length: int) -> list[np.ndarray]:
    kernels = []
    for k in range(_DIRECTIONS):
        angle = np.pi * k / _DIRECTIONS
        kernel = np.zeros((length, length), np.float32)
        c = (length - 1) / 2
        dx, dy = np.cos(angle) * c, np.sin(angle) * c
        cv2.line(kernel, (round((c - dx) * 16), round((c - dy) * 16)), (round((c + dx) * 16), round((c + dy) * 16)),
                 1.0, 1, cv2.LINE_AA, shift=4)
        kernels.append(kernel / kernel.sum())
    return kernels


def _galvanized(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    """Zinc spangle: polygonal crystals, each with its own reflectance and feather direction."""
    size = shape[0] / 256
    labels = _spangle_cells(rng, shape, cell=44.0 * size)
    count = int(labels.max()) + 1
    offsets = rng.uniform(-18.0, 18.0, count).astype(np.float32)
    directions = rng.integers(0, _DIRECTIONS, count).astype(np.uint8)
    white = white_noise(rng, shape)
    length = max(3, round(9 * size) | 1)
    cell_direction = directions[labels]
    feather = np.zeros(shape, np.float32)
    for k, kernel in enumerate(_directional_kernels(length)):
        np.copyto(feather, cv2.filter2D(white, -1, kernel, borderType=cv2.BORDER_REFLECT), where=cell_direction == k)
    boundary = np.zeros(shape, np.float32)
    boundary[:, 1:] += labels[:, 1:] != labels[:, :-1]
    boundary[1:, :] += labels[1:, :] != labels[:-1, :]
    boundary = cv2.GaussianBlur(np.minimum(boundary, 1.0), (0, 0), 0.6)
    mottle = fractal_noise(rng, shape, (3.0, 3.0), octaves=2)
    fine = grain(rng, shape, 0.5, 0.5)
    return 150.0 + offsets[labels] + 6.0 * normalize(feather) - 10.0 * boundary + 4.0 * mottle + 2.0 * fine


GRADES: dict[str, Grade] = {
    grade.name: grade
    for grade in (
        Grade("hot_rolled", _hot_rolled, metal=150.0, shade_gain=60.0, tint=(0.96, 0.98, 1.04)),
        Grade("pickled", _pickled, metal=175.0, shade_gain=70.0, tint=(1.02, 1.0, 0.97)),
        Grade("cold_rolled", _cold_rolled, metal=215.0, shade_gain=90.0, tint=(1.0, 1.0, 1.01)),
        Grade("galvanized", _galvanized, metal=200.0, shade_gain=80.0, tint=(0.98, 1.0, 1.03)),
    )
}
