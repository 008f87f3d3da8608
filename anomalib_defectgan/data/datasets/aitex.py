"""AITEX fabric database -> manifest of 256x256 tiles (fabric code = grade, defect code = class).

Layout: ``ROOT/Defect_images/NNNN_DDD_FF.png``, ``ROOT/Mask_images/NNNN_DDD_FF_mask.png`` (or
``_mask1``, ``_mask2``, ...: their union is used) and ``ROOT/NoDefect_images/<roll>/NNNN_000_FF.png``.
Images (4096x256, some stored as grey+alpha) are read as greyscale and cut into square tiles
along the width (a last tile aligned with the right edge covers any remainder). Masks are
anti-aliased: a pixel is defect when >= 128. A defect tile is one whose mask tile is non-empty;
empty tiles of defect images are skipped (the defect may be missed by the annotation), every tile
of a defect-free image is good. A defect image without mask is skipped with a warning, as is a
mask without image. Class names are ``defect_DDD`` and grades ``fabric_FF``.
"""

from __future__ import annotations

import re
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
    require_root,
    tile_name,
    tile_origins,
    warn,
)
from anomalib_defectgan.data.image_io import read_image, read_mask, write_image
from anomalib_defectgan.data.manifest import GOOD_CLASS
from anomalib_defectgan.errors import summarize

SOURCE = "aitex"
NAME = re.compile(r"^(?P<index>\d+)_(?P<defect>\d+)_(?P<fabric>\d+)$")
MASK_NAME = re.compile(r"^(?P<stem>\d+_\d+_\d+)_mask(?P<part>\d*)$")


def parse_name(path: Path) -> tuple[str, str]:
    """``(defect_class, grade)`` from ``NNNN_DDD_FF``: ``('defect_DDD', 'fabric_FF')``.

    Raises:
        DatasetError: The name does not have that form.
    """
    match = NAME.match(path.stem)
    if match is None:
        raise DatasetError(f"{path}: file name is not NNNN_DDD_FF (index, defect code, fabric code)")
    return f"defect_{match['defect']}", f"fabric_{match['fabric']}"


def tile_grid(size: tuple[int, int], tile: int) -> list[tuple[int, int]]:
    """Top-left corners ``(x, y)`` of the tiles of an image of ``size`` (W, H)."""
    return [(x, y) for y in tile_origins(size[1], tile) for x in tile_origins(size[0], tile)]


def to_manifest(
    root: str | Path,
    out: str | Path,
    *,
    seed: int = 0,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    tile_size: int = 256,
    overwrite: bool = False,
) -> pd.DataFrame:
    """Import AITEX as tiles.

    Args:
        root: Folder with ``Defect_images/``, ``Mask_images/`` and ``NoDefect_images/``.
        out: Output folder: ``images/<class>/<stem>_xXXXX_yYYYY.png``, ``masks/<class>/...``,
            ``images/good/<roll>/...`` and ``manifest.csv``.
        seed: Seed of the split (by source image; defect images stratified by class, defect-free
            images by fabric).
        fractions: ``(train, val, test)``.
        tile_size: Tile side in pixels (images must be at least this tall).
        overwrite: Allow a non-empty ``out``.

    Returns:
        The manifest as written (``mask_kind`` = ``pixel`` for defect tiles).

    Raises:
        DatasetError: Folders missing, file names not ``NNNN_DDD_FF``, images smaller than a
            tile, or a mask whose size differs from its image.
    """
    root = require_root(root)
    fractions = check_fractions(fractions)
    if tile_size < 1:
        raise DatasetError(f"tile_size must be >= 1, got {tile_size}")
    defect_dir = find_dir(root, ["Defect_images"])
    mask_dir = find_dir(root, ["Mask_images"])
    good_dir = find_dir(root, ["NoDefect_images"])
    if defect_dir is None and good_dir is None:
        raise DatasetError(
            f"{root}: not an AITEX folder; expected Defect_images/, Mask_images/, NoDefect_images/"
        )
    if defect_dir is not None and mask_dir is None:
        raise DatasetError(f"{root}: Defect_images/ without Mask_images/")
    out_dir = prepare_output(out, overwrite)

    masks: dict[str, list[Path]] = {}
    for path in images_in(mask_dir) if mask_dir else []:
        match = MASK_NAME.match(path.stem)
        if match is None:
            raise DatasetError(f"{path}: mask name is not NNNN_DDD_FF_mask[N]")
        masks.setdefault(match["stem"], []).append(path)
    defects = images_in(defect_dir) if defect_dir else []
    goods = images_in(good_dir, recursive=True) if good_dir else []
    labels = {path: parse_name(path) for path in defects + goods}
    sizes = {path: image_size(path) for path in defects + goods}
    small = [p.name for p, (w, h) in sizes.items() if w < tile_size or h < tile_size]
    if small:
        raise DatasetError(f"{root}: image(s) smaller than a {tile_size} px tile, {summarize(small)}")
    for image in defects:
        for mask in masks.get(image.stem, []):
            if image_size(mask) != sizes[image]:
                raise DatasetError(
                    f"{mask}: mask size {image_size(mask)} differs from its image {image.name} "
                    f"{sizes[image]} (WxH)"
                )
    unmasked = [p.name for p in defects if p.stem not in masks]
    if unmasked:
        warn(f"{defect_dir}: skipped defect image(s) without mask, {summarize(unmasked)}")
    orphans = sorted(set(masks) - {p.stem for p in defects})
    if orphans:
        warn(f"{mask_dir}: ignored mask(s) without defect image, {summarize(orphans)}")
    masks_of = {p: masks[p.stem] for p in defects if p.stem in masks}

    def stratum(path: Path) -> str:
        return labels[path][0] if path in masks_of else f"{GOOD_CLASS}_{labels[path][1]}"

    sources = list(masks_of) + goods
    splits = assign_splits([str(p) for p in sources], [stratum(p) for p in sources], seed, fractions)

    rows = []
    empty: list[str] = []
    for image in sources:
        klass, grade = labels[image]
        split = splits[str(image)]
        pixels = read_image(image, channels=1)[..., 0]
        if image in masks_of:
            mask = np.logical_or.reduce([read_mask(m, pixels.shape) for m in masks_of[image]])
            if not mask.any():
                empty.append(image.name)
            for x, y in tile_grid(sizes[image], tile_size):
                window = mask[y : y + tile_size, x : x + tile_size]
                if not window.any():
                    continue
                tile_path = out_dir / "images" / klass / tile_name(image.stem, x, y)
                mask_path = out_dir / "masks" / klass / tile_name(image.stem, x, y)
                write_image(tile_path, pixels[y : y + tile_size, x : x + tile_size])
                write_image(mask_path, window)
                rows.append(
                    make_row(tile_path, mask_path, klass, grade, split, SOURCE, "pixel", image, (x, y))
                )
        else:
            folder = image.parent.relative_to(good_dir).as_posix()
            for x, y in tile_grid(sizes[image], tile_size):
                tile_path = out_dir / "images" / GOOD_CLASS / folder / tile_name(image.stem, x, y)
                write_image(tile_path, pixels[y : y + tile_size, x : x + tile_size])
                rows.append(
                    make_row(tile_path, None, GOOD_CLASS, grade, split, SOURCE, "none", image, (x, y))
                )
    if empty:
        warn(f"{mask_dir}: defect image(s) with an empty mask gave no tile, {summarize(empty)}")
    return finish(rows, out_dir, root)
