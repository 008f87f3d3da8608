"""SD-saliency-900 (pixel masks, three classes) -> manifest, plus defect-free background tiles.

Layout: ``ROOT/images/<Cls>_<n>.<ext>`` and ``ROOT/masks/<same stem>.<ext>`` (the distributed
folder names ``Source Images`` and ``Ground truth`` work too). The class is the file name's
prefix, mapped to the NEU-DET names (In -> inclusion, Pa -> patches, Sc -> scratches; other
prefixes are kept as they are). Images and masks are referenced in place (no copy). The dataset
has no defect-free image, so good tiles are cut from the clean area of each image.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from anomalib_defectgan.data.datasets.common import (
    DEFAULT_FRACTIONS,
    DatasetError,
    assign_splits,
    background_tile_origins,
    check_fractions,
    find_dir,
    finish,
    image_size,
    images_in,
    make_row,
    prepare_output,
    raise_if_missing,
    require_root,
    tile_name,
    warn,
)
from anomalib_defectgan.data.image_io import read_image, read_mask, write_image
from anomalib_defectgan.data.manifest import GOOD_CLASS

SOURCE = "sd-saliency-900"
CLASS_NAMES = {"in": "inclusion", "pa": "patches", "sc": "scratches"}


def class_of(stem: str) -> str:
    """Defect class from a file stem such as ``In_12`` (-> ``inclusion``)."""
    prefix = stem.split("_", 1)[0]
    return CLASS_NAMES.get(prefix.lower(), prefix)


def to_manifest(
    root: str | Path,
    out: str | Path,
    *,
    grade: str = "hot_rolled",
    seed: int = 0,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    background_tiles: int = 2,
    tile_size: int = 64,
    overwrite: bool = False,
) -> pd.DataFrame:
    """Import SD-saliency-900: one defect row per image and good background tiles.

    Args:
        root: Dataset folder with ``images/`` and ``masks/``.
        out: Output folder: ``images/good/<stem>_xXXXX_yYYYY.png`` and ``manifest.csv``.
        grade: Grade (material) name written in every row.
        seed: Seed of the split and of the tile positions.
        fractions: ``(train, val, test)`` per class.
        background_tiles: Good tiles per image, non-overlapping and fully outside the mask.
        tile_size: Side of a good tile in pixels (default 64).
        overwrite: Allow a non-empty ``out``.

    Returns:
        The manifest as written; good tiles inherit the split of their image and record it in
        ``origin_path``, ``tile_x``, ``tile_y``.

    Raises:
        DatasetError: Folders not found, or images without a mask (count and first names).
        ImageReadError: A mask whose size differs from its image, or an undecodable file.
    """
    root = require_root(root)
    fractions = check_fractions(fractions)
    if tile_size < 1 or background_tiles < 0:
        raise DatasetError(
            f"tile_size must be >= 1 and background_tiles >= 0, got {tile_size}, {background_tiles}"
        )
    images_dir = find_dir(root, ["images", "Source Images", "source_images"])
    masks_dir = find_dir(root, ["masks", "Ground truth", "ground_truth", "gt"])
    if images_dir is None or masks_dir is None:
        raise DatasetError(f"{root}: not an SD-saliency-900 folder; expected images/ and masks/")
    out_dir = prepare_output(out, overwrite)

    images = images_in(images_dir)
    masks = {p.stem: p for p in images_in(masks_dir)}
    raise_if_missing([p.name for p in images if p.stem not in masks], f"mask(s) in {masks_dir}", root)
    orphans = sorted(set(masks) - {p.stem for p in images})
    if orphans:
        warn(f"{masks_dir}: ignored mask(s) without image, {len(orphans)}: {', '.join(orphans[:5])}")
    for image in images:
        if image_size(image) != image_size(masks[image.stem]):
            raise DatasetError(
                f"{masks[image.stem]}: mask size {image_size(masks[image.stem])} differs from "
                f"its image {image.name} {image_size(image)} (WxH)"
            )
    splits = assign_splits([str(p) for p in images], [class_of(p.stem) for p in images], seed, fractions)

    rows = []
    for image in images:
        split, mask_path = splits[str(image)], masks[image.stem]
        rows.append(make_row(image, mask_path, class_of(image.stem), grade, split, SOURCE, "pixel", image))
        if not background_tiles:
            continue
        mask = read_mask(mask_path)
        if not mask.any():
            warn(f"{mask_path}: empty mask, image kept as a defect row")
        pixels = read_image(image, channels=1)[..., 0]
        for x, y in background_tile_origins(mask, tile_size, background_tiles, image.name, seed):
            tile_path = out_dir / "images" / GOOD_CLASS / tile_name(image.stem, x, y)
            write_image(tile_path, pixels[y : y + tile_size, x : x + tile_size])
            rows.append(make_row(tile_path, None, GOOD_CLASS, grade, split, SOURCE, "none", image, (x, y)))
    return finish(rows, out_dir, root)
