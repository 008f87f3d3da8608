"""Tiny datasets written by tests themselves (no dependency on the procedural world)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from anomalib_defectgan.data.image_io import write_image
from anomalib_defectgan.data.manifest import write_manifest


def write_blob_dataset(root: Path, size: int = 48, per_class: int = 3, goods: int = 3, seed: int = 0,
                       grades: tuple[str, ...] = ("dark", "bright"), classes: tuple[str, ...] = ("spot", "line"),
                       ) -> Path:
    """Write a small manifest dataset: noise textures per grade, defects drawn as blobs or lines.

    Returns:
        Path of the written ``manifest.csv``.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for g, grade in enumerate(grades):
        base = 60 + 120 * g
        for i in range(goods):
            image = np.clip(base + rng.normal(0, 8, (size, size)), 0, 255).astype(np.uint8)
            path = root / grade / "good" / f"{i:03d}.png"
            write_image(path, image)
            split = "val" if i == goods - 1 else "train"
            rows.append({"image_path": str(path), "mask_path": "", "label": "good", "defect_class": "good",
                         "grade": grade, "split": split, "source": "test"})
        for c, name in enumerate(classes):
            for i in range(per_class):
                image = np.clip(base + rng.normal(0, 8, (size, size)), 0, 255).astype(np.uint8)
                mask = np.zeros((size, size), bool)
                y, x = rng.integers(size // 4, 3 * size // 4, size=2)
                if c == 0:
                    yy, xx = np.ogrid[:size, :size]
                    mask |= (yy - y) ** 2 + (xx - x) ** 2 <= 16
                else:
                    mask[y:y + 2, size // 8: 7 * size // 8] = True
                image[mask] = 255 - base
                path = root / grade / name / f"{i:03d}.png"
                mask_path = root / grade / "masks" / name / f"{i:03d}_mask.png"
                write_image(path, image)
                write_image(mask_path, mask)
                split = "val" if i == per_class - 1 else "train"
                rows.append({"image_path": str(path), "mask_path": str(mask_path), "label": "defect",
                             "defect_class": name, "grade": grade, "split": split, "source": "test",
                             "mask_kind": "pixel"})
    frame = pd.DataFrame(rows)
    frame["mask_kind"] = frame["mask_kind"].fillna("none")
    return write_manifest(frame, root / "manifest.csv")
