"""Vectorised noise fields for the steel world (numpy + OpenCV only).

Every function takes a :class:`numpy.random.Generator`, so a render is a pure function of its
seed. Fields are ``float32`` with roughly zero mean and unit standard deviation.
"""

from __future__ import annotations

import cv2
import numpy as np


def normalize(field: np.ndarray) -> np.ndarray:
    """Shift and scale a field to zero mean and unit standard deviation."""
    field = field - field.mean()
    std = float(field.std())
    return (field / std if std > 1e-8 else field).astype(np.float32)


_UNIT = np.float32(12.0**0.5)


def white_noise(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Zero-mean, unit-variance uniform white noise (uniform is ~4x cheaper to draw than normal;
    after any blur it is indistinguishable from Gaussian noise)."""
    return (rng.random(shape, dtype=np.float32) - np.float32(0.5)) * _UNIT


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: tuple[float, float]) -> np.ndarray:
    """Value noise: a coarse random grid of about ``cells = (rows, cols)`` cubically upsampled.

    Fewer columns than rows gives blobs stretched horizontally (along the rolling direction).
    """
    rows, cols = max(2, round(cells[0])), max(2, round(cells[1]))
    # One extra cell each side, cropped away, so the image border is not a flat replicate band.
    grid = white_noise(rng, (rows + 2, cols + 2))
    height, width = shape
    pad_y, pad_x = height / rows, width / cols
    big = cv2.resize(grid, (round(width + 2 * pad_x), round(height + 2 * pad_y)), interpolation=cv2.INTER_CUBIC)
    top, left = round(pad_y), round(pad_x)
    return big[top:top + height, left:left + width]


def fractal_noise(
    rng: np.random.Generator,
    shape: tuple[int, int],
    cells: tuple[float, float],
    octaves: int = 4,
    persistence: float = 0.5,
) -> np.ndarray:
    """Sum of ``octaves`` value-noise layers, each with twice the cells and ``persistence`` the amplitude.

    The octaves are summed on a grid of about three pixels per finest cell and upsampled once.
    """
    finest = (cells[0] * 2.0 ** (octaves - 1), cells[1] * 2.0 ** (octaves - 1))
    work = (min(shape[0], max(8, int(np.ceil(3 * finest[0])))), min(shape[1], max(8, int(np.ceil(3 * finest[1])))))
    total = np.zeros(work, np.float32)
    amplitude = 1.0
    for octave in range(octaves):
        scale = 2.0**octave
        total += amplitude * smooth_noise(rng, work, (cells[0] * scale, cells[1] * scale))
        amplitude *= persistence
    if work != shape:
        total = cv2.resize(total, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)
    return normalize(total)


def grain(rng: np.random.Generator, shape: tuple[int, int], sigma_x: float, sigma_y: float) -> np.ndarray:
    """White noise blurred by an axis-aligned Gaussian: fine grain (``sigma_x > sigma_y``: horizontal streaks).

    Along an axis with a wide blur the noise is drawn on a coarser grid and upsampled, which looks
    the same and costs a fraction of a full-resolution wide Gaussian.
    """
    height, width = shape
    step_x = max(1, int(sigma_x // 2))
    step_y = max(1, int(sigma_y // 2))
    small = (-(-height // step_y), -(-width // step_x))
    white = white_noise(rng, small)
    field = cv2.GaussianBlur(white, (0, 0), sigmaX=sigma_x / step_x, sigmaY=sigma_y / step_y,
                             borderType=cv2.BORDER_REFLECT)
    if small != shape:
        field = cv2.resize(field, (small[1] * step_x, small[0] * step_y), interpolation=cv2.INTER_LINEAR)
        field = field[:height, :width]
    return normalize(field)


def smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    """Hermite step from 0 at ``edge0`` to 1 at ``edge1``."""
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)
