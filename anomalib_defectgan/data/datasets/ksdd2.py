"""KolektorSDD2 -> manifest (images used in place, ground truth binarised to PNG masks).

Layout: ``ROOT/{train,test}/<id>.png`` with ``<id>_GT.png`` beside each image. An image is a
defect when its ground truth has a defect pixel: values >= 128, or value 1 when the file is
stored as 0/1. Defect masks are rewritten as 0/255 PNG under ``out/masks`` so every reader sees
the same mask; images are referenced by absolute path. The official test folder is the test
split; the train folder is split into train and val (seeded, per label).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from anomalib_defectgan.data.datasets.common import (
    DEFAULT_FRACTIONS,
    DatasetError,
    assign_splits,
    check_fractions,
    find_dir,
    finish,
    image_size,
    images_in,
    make_row,
    prepare_output,
    raise_if_missing,
    require_root,
    train_val_fractions,
)
from anomalib_defectgan.data.image_io import MASK_THRESHOLD, read_image, write_image
from anomalib_defectgan.data.manifest import GOOD_CLASS
from anomalib_defectgan.errors import ImageReadError

SOURCE = "ksdd2"
GT_SUFFIX = "_GT"


def read_ground_truth(path: Path, size: tuple[int, int]) -> np.ndarray:
    """``bool [H, W]`` defect mask of a ground-truth file (0/255 or 0/1 storage).

    Args:
        path: The ``_GT`` file.
        size: ``(width, height)`` of its image; a different size is an error.
    """
    values = read_image(path, channels=1)[..., 0]
    if values.shape != (size[1], size[0]):
        raise ImageReadError(
            path,
            f"mask size {values.shape[1]}x{values.shape[0]} differs from its image {size[0]}x{size[1]} (WxH)",
        )
    return values >= (1 if values.max(initial=0) == 1 else MASK_THRESHOLD)


def to_manifest(
    root: str | Path,
    out: str | Path,
    *,
    grade: str = "kolektor",
    defect_class: str = "defect",
    seed: int = 0,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    overwrite: bool = False,
) -> pd.DataFrame:
    """Import KolektorSDD2.

    Args:
        root: Folder with ``train/`` and/or ``test/``.
        out: Output folder: ``masks/<class>/<split folder>_<id>.png`` and ``manifest.csv``.
        grade: Grade (material) name written in every row.
        defect_class: Class name of the defect rows (KSDD2 has a single defect class).
        seed: Seed of the train/val split.
        fractions: ``(train, val, test)``; the train folder is split train:val in the ratio of
            the first two (the test folder is always test).
        overwrite: Allow a non-empty ``out``.

    Returns:
        The manifest as written, ``mask_kind`` = ``pixel`` for defects.

    Raises:
        DatasetError: No ``train``/``test`` folder, or images without ``_GT`` (or ``_GT``
            files without image), with the count and first names.
        ImageReadError: A ground truth whose size differs from its image.
    """
    root = require_root(root)
    fractions = check_fractions(fractions)
    if not defect_class or defect_class == GOOD_CLASS:
        raise DatasetError(f"defect_class must be a non-empty name other than 'good', got {defect_class!r}")
    folders = [
        (folder, split) for split in ("train", "test") if (folder := find_dir(root, [split])) is not None
    ]
    if not folders:
        raise DatasetError(
            f"{root}: not a KolektorSDD2 folder; expected train/ and/or test/ with <id>.png + <id>_GT.png"
        )
    out_dir = prepare_output(out, overwrite)

    items: list[tuple[Path, Path, str, str]] = []  # image, ground truth, official split, label
    missing: list[str] = []
    for folder, official in folders:
        files = {p.stem: p for p in images_in(folder)}
        for stem, image in files.items():
            if stem.endswith(GT_SUFFIX):
                if stem[: -len(GT_SUFFIX)] not in files:
                    missing.append(f"{folder.name}/{stem[: -len(GT_SUFFIX)]} (for {image.name})")
                continue
            ground_truth = files.get(stem + GT_SUFFIX)
            if ground_truth is None:
                missing.append(f"{folder.name}/{stem}{GT_SUFFIX} (for {image.name})")
                continue
            items.append((image, ground_truth, official, ""))
    raise_if_missing(missing, "image/ground-truth file(s)", root)
    items = [
        (image, gt, official, "defect" if read_ground_truth(gt, image_size(image)).any() else GOOD_CLASS)
        for image, gt, official, _ in items
    ]
    train = [(str(image), label) for image, _, official, label in items if official == "train"]
    ratio = train_val_fractions(fractions)
    splits = assign_splits([k for k, _ in train], [label for _, label in train], seed, ratio)

    rows = []
    for image, ground_truth, official, label in items:
        split = splits.get(str(image), "test")
        mask_path = None
        if label != GOOD_CLASS:
            mask_path = out_dir / "masks" / defect_class / f"{official}_{image.stem}.png"
            write_image(mask_path, read_ground_truth(ground_truth, image_size(image)))
        name = defect_class if label != GOOD_CLASS else GOOD_CLASS
        rows.append(make_row(image, mask_path, name, grade, split, SOURCE, "pixel", image))
    return finish(rows, out_dir, root)
