"""A tiny Folder-layout steel-like dataset for the DefectClassifier / DefectAugmented tests.

Layout (MVTec-like, as anomalib's Folder reads it): ``root/train/good``, ``root/test/good``,
``root/test/defect`` and ``root/ground_truth/defect/<stem>_mask.png``. Textures are smoothed
noise with horizontal striation; defects are dark elliptic blobs.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from anomalib_defectgan.data.image_io import write_image


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    noise = rng.normal(0, 1, (size, size)).astype(np.float32)
    noise = cv2.GaussianBlur(noise, (0, 0), sigmaX=3.0, sigmaY=0.7)
    noise = (noise - noise.mean()) / (noise.std() + 1e-6)
    return np.clip(0.55 + 0.06 * noise, 0, 1)


def write_tiny_folder(root: Path, size: int = 64, train_good: int = 16, test_good: int = 6,
                      test_defect: int = 6, seed: int = 0) -> Path:
    """Write the dataset under ``root`` and return ``root``."""
    rng = np.random.default_rng(seed)
    for split, count in (("train/good", train_good), ("test/good", test_good)):
        for i in range(count):
            write_image(root / split / f"{i:03d}.png", _texture(rng, size))
    for i in range(test_defect):
        image = _texture(rng, size)
        mask = np.zeros((size, size), np.uint8)
        center = (int(rng.integers(size // 4, 3 * size // 4)), int(rng.integers(size // 4, 3 * size // 4)))
        axes = (int(rng.integers(size // 10, size // 5)), int(rng.integers(size // 16, size // 8)))
        cv2.ellipse(mask, center, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
        image[mask > 0] *= 0.45
        write_image(root / "test/defect" / f"{i:03d}.png", image)
        write_image(root / "ground_truth/defect" / f"{i:03d}_mask.png", mask)
    return root


def tiny_folder_datamodule(root: Path, batch_size: int = 8, **kwargs):  # noqa: ANN201
    """anomalib ``Folder`` over :func:`write_tiny_folder`'s layout (no workers)."""
    from anomalib.data import Folder

    options = {"name": "tiny", "root": root, "normal_dir": "train/good", "abnormal_dir": "test/defect",
               "normal_test_dir": "test/good", "mask_dir": "ground_truth/defect",
               "train_batch_size": batch_size, "eval_batch_size": batch_size, "num_workers": 0, "seed": 0}
    options.update(kwargs)
    return Folder(**options)
