"""Severstal steel defect detection (Kaggle) -> manifest of 256x256 tiles.

Layout: ``ROOT/train.csv`` and ``ROOT/train_images/<ImageId>``. Both published CSV formats are
read: ``ImageId_ClassId,EncodedPixels`` (four rows per image, empty pixels for none) and
``ImageId,ClassId,EncodedPixels`` (defect rows only). Images in ``train_images`` without any
run are good. Each image (1600x256) is cut into ``tile_size`` tiles along its width, the last
one aligned with the right edge (1600 = 6 x 256 + 64, so it overlaps its neighbour by 192 px);
a tile is a defect when its mask tile is non-empty, its class being the class with most pixels
in it and its mask the union of all classes; other tiles are good.
"""

from __future__ import annotations

import csv
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
    raise_if_missing,
    require_root,
    tile_name,
    tile_origins,
)
from anomalib_defectgan.data.image_io import read_image, write_image
from anomalib_defectgan.data.manifest import GOOD_CLASS
from anomalib_defectgan.errors import summarize

SOURCE = "severstal"
HEIGHT, WIDTH = 256, 1600


def rle_decode(rle: str, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """Decode Kaggle run-length encoding into a ``uint8 [height, width]`` 0/1 mask.

    ``rle`` is ``"start length start length ..."`` with 1-based starts counted in column-major
    order (down the first column, then the next column). Runs must be in increasing order and
    must not overlap; an empty string is an empty mask.

    Raises:
        ValueError: Non-integer tokens, an odd token count, a start < 1, a length < 1, runs
            out of order or overlapping, or a run past the end of the image.
    """
    tokens = rle.split()
    if len(tokens) % 2:
        raise ValueError(f"odd number of values ({len(tokens)}) in run-length encoding")
    try:
        values = np.array([int(t) for t in tokens], dtype=np.int64).reshape(-1, 2)
    except ValueError:
        bad = next(t for t in tokens if not re.fullmatch(r"[+-]?\d+", t))
        raise ValueError(f"run-length encoding holds a non-integer {bad!r}") from None
    flat = np.zeros(height * width, dtype=np.uint8)
    end = 0
    for start, length in values:
        if start < 1 or length < 1:
            raise ValueError(f"run {start} {length}: start and length must be >= 1")
        if start - 1 < end:
            raise ValueError(f"run {start} {length} overlaps or precedes the previous run")
        end = start - 1 + length
        if end > flat.size:
            raise ValueError(
                f"run {start} {length} ends past the {height}x{width} image ({flat.size} pixels)"
            )
        flat[start - 1 : end] = 1
    return flat.reshape(width, height).T.copy()


def rle_encode(mask: np.ndarray) -> str:
    """Encode a ``[H, W]`` mask (non-zero = defect) as Kaggle run-length encoding (inverse of :func:`rle_decode`)."""
    flat = (np.asarray(mask).T.reshape(-1) != 0).astype(np.int8)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flat, [0]])))
    starts, ends = edges[0::2], edges[1::2]
    return " ".join(f"{s + 1} {e - s}" for s, e in zip(starts, ends))


def read_runs(csv_path: Path) -> dict[str, dict[int, tuple[str, int]]]:
    """Parse ``train.csv`` (either format) into ``{image_id: {class_id: (rle, line)}}``.

    Images listed only with empty runs appear with an empty dict.

    Raises:
        DatasetError: Unknown header, or a malformed row (wrong field count, bad class id,
            duplicate image/class); the message names the file and line.
    """
    runs: dict[str, dict[int, tuple[str, int]]] = {}
    try:
        handle = csv_path.open(newline="", encoding="utf-8-sig")
    except OSError as err:
        raise DatasetError(f"{csv_path}: cannot read ({err})") from err
    with handle:
        reader = csv.reader(handle)
        try:
            header = [h.strip() for h in next(reader, [])]
            if header == ["ImageId_ClassId", "EncodedPixels"]:
                combined = True
            elif header == ["ImageId", "ClassId", "EncodedPixels"]:
                combined = False
            else:
                raise DatasetError(
                    f"{csv_path}:1: unknown header {header}; expected ImageId_ClassId,EncodedPixels "
                    "or ImageId,ClassId,EncodedPixels"
                )
            for fields in reader:
                line = reader.line_num
                if not fields or all(not f.strip() for f in fields):
                    continue
                if len(fields) != len(header):
                    raise DatasetError(f"{csv_path}:{line}: expected {len(header)} fields, got {len(fields)}")
                if combined:
                    image_id, _, class_text = fields[0].strip().rpartition("_")
                    rle = fields[1]
                else:
                    image_id, class_text, rle = fields[0].strip(), fields[1].strip(), fields[2]
                if not image_id or not class_text.isdigit() or int(class_text) < 1:
                    raise DatasetError(
                        f"{csv_path}:{line}: bad image id / class id {fields[0]!r}"
                        + ("" if combined else f", {fields[1]!r}")
                    )
                per_image = runs.setdefault(image_id, {})
                class_id = int(class_text)
                if class_id in per_image:
                    raise DatasetError(
                        f"{csv_path}:{line}: {image_id} class {class_id} listed twice "
                        f"(first on line {per_image[class_id][1]})"
                    )
                if rle.strip():
                    per_image[class_id] = (rle, line)
        except (UnicodeDecodeError, csv.Error) as err:
            raise DatasetError(f"{csv_path}: unreadable after line {reader.line_num} ({err})") from None
    return runs


def _class_masks(
    csv_path: Path, name: str, runs: dict[int, tuple[str, int]], size: tuple[int, int]
) -> list[tuple[int, np.ndarray]]:
    """Decode an image's runs into ``[(class_id, bool mask), ...]``; errors name the CSV line."""
    width, height = size
    decoded = []
    for class_id, (rle, line) in sorted(runs.items()):
        try:
            decoded.append((class_id, rle_decode(rle, height, width).astype(bool)))
        except ValueError as err:
            raise DatasetError(f"{csv_path}:{line}: {name} class {class_id}: {err}") from None
    return decoded


def to_manifest(
    root: str | Path,
    out: str | Path,
    *,
    grade: str = "severstal",
    seed: int = 0,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    tile_size: int = 256,
    overwrite: bool = False,
) -> pd.DataFrame:
    """Import Severstal: tiles of every training image, defect tiles with PNG masks.

    Args:
        root: Folder with ``train.csv`` and ``train_images/``.
        out: Output folder: ``images/<class>/<id>_xXXXX_y0000.png`` (greyscale PNG tiles),
            ``masks/<class>/...`` and ``manifest.csv``.
        grade: Grade (material) name written in every row.
        seed: Seed of the split (by image, stratified by the image's largest class or good).
        fractions: ``(train, val, test)``.
        tile_size: Tile side in pixels (square tiles, full image height must be >= it).
        overwrite: Allow a non-empty ``out``.

    Returns:
        The manifest as written; classes are ``class_1`` .. ``class_4``.

    Raises:
        DatasetError: Missing ``train.csv``/``train_images``, malformed CSV rows or run-length
            encodings (file and line), or images named in the CSV but absent (count and names).
    """
    root = require_root(root)
    fractions = check_fractions(fractions)
    if tile_size < 1:
        raise DatasetError(f"tile_size must be >= 1, got {tile_size}")
    csv_path = root / "train.csv"
    images_dir = find_dir(root, ["train_images"])
    if not csv_path.is_file() or images_dir is None:
        raise DatasetError(f"{root}: not a Severstal folder; expected train.csv and train_images/")
    out_dir = prepare_output(out, overwrite)

    runs = read_runs(csv_path)
    images = {p.name: p for p in images_in(images_dir)}
    raise_if_missing(
        [name for name in runs if name not in images], f"image(s) listed in {csv_path.name}", images_dir
    )
    sizes = {name: image_size(image) for name, image in images.items()}
    small = [name for name, (w, h) in sizes.items() if h < tile_size or w < tile_size]
    if small:
        raise DatasetError(f"{images_dir}: image(s) smaller than a {tile_size} px tile, {summarize(small)}")
    # Decode every run once before writing anything, so a bad run fails the import up front.
    strata = {}
    for name in images:
        areas = {k: int(m.sum()) for k, m in _class_masks(csv_path, name, runs.get(name, {}), sizes[name])}
        strata[name] = f"class_{max(areas, key=areas.get)}" if areas else GOOD_CLASS

    splits = assign_splits(list(strata), list(strata.values()), seed, fractions)
    rows = []
    for name, image in images.items():
        pixels = read_image(image, channels=1)[..., 0]
        per_class = np.zeros(pixels.shape, dtype=np.uint16)  # 0 = none, k = class k (last wins)
        for class_id, decoded in _class_masks(csv_path, name, runs.get(name, {}), sizes[name]):
            per_class[decoded] = class_id
        stem = Path(name).stem
        for y in tile_origins(pixels.shape[0], tile_size):
            for x in tile_origins(pixels.shape[1], tile_size):
                window = per_class[y : y + tile_size, x : x + tile_size]
                counts = np.bincount(window.ravel(), minlength=2)
                counts[0] = 0
                klass = f"class_{int(counts.argmax())}" if counts.any() else GOOD_CLASS
                tile_path = out_dir / "images" / klass / tile_name(stem, x, y)
                write_image(tile_path, pixels[y : y + tile_size, x : x + tile_size])
                mask_path = None
                if klass != GOOD_CLASS:
                    mask_path = out_dir / "masks" / klass / tile_name(stem, x, y)
                    write_image(mask_path, window > 0)
                rows.append(
                    make_row(tile_path, mask_path, klass, grade, splits[name], SOURCE, "pixel", image, (x, y))
                )
    return finish(rows, out_dir, root)
