"""Helpers shared by the dataset adapters: splits, tiling, background tiles, output and rows.

Every adapter works in two phases: it first parses and checks the whole source (annotations,
file lists, image sizes read from headers) and raises a :class:`DatasetError` before anything is
written; only then does it write masks and tiles, and the manifest last (atomically), so a
failed import never leaves a manifest that points at half-written data.
"""

from __future__ import annotations

import math
import warnings
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from anomalib_defectgan.data.image_io import IMAGE_SUFFIXES
from anomalib_defectgan.data.manifest import GOOD_CLASS, read_manifest, write_manifest
from anomalib_defectgan.errors import DefectGanError, ImageReadError, OutputExistsError, summarize

DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)
MANIFEST_NAME = "manifest.csv"


class DatasetError(DefectGanError):
    """A source dataset is malformed: bad annotation, missing files, unexpected layout."""


class DatasetWarning(UserWarning):
    """Something in a source dataset was skipped (e.g. a defect image without a mask)."""


def warn(message: str) -> None:
    """Emit a :class:`DatasetWarning` (printed by the CLI, catchable in tests)."""
    warnings.warn(message, DatasetWarning, stacklevel=3)


def find_dir(root: Path, names: Sequence[str]) -> Path | None:
    """The first child folder of ``root`` whose name matches one of ``names`` (case-insensitive)."""
    if not root.is_dir():
        return None
    children = {child.name.lower(): child for child in sorted(root.iterdir()) if child.is_dir()}
    for name in names:
        if name.lower() in children:
            return children[name.lower()]
    return None


def require_root(root: str | Path) -> Path:
    """Return ``root`` as an absolute path, or raise if it is not a folder."""
    path = Path(root).expanduser().resolve()
    if not path.is_dir():
        raise DatasetError(f"{root}: dataset root is not a folder")
    return path


def images_in(folder: Path, recursive: bool = False) -> list[Path]:
    """Image files in ``folder`` (optionally in sub-folders too), sorted."""
    pattern = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in pattern if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def raise_if_missing(missing: Sequence[str], what: str, origin: str | Path) -> None:
    """Raise one error that counts the ``missing`` files and names the first few."""
    if missing:
        raise DatasetError(f"{origin}: {what} missing, {summarize(sorted(missing))}")


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` read from the file header only (no pixel decoding)."""
    try:
        with Image.open(path) as img:
            return img.size
    except FileNotFoundError as err:
        raise ImageReadError(path, "file not found") from err
    except (UnidentifiedImageError, OSError) as err:
        raise ImageReadError(path, f"cannot read image header ({err})") from err


def prepare_output(out: str | Path, overwrite: bool) -> Path:
    """Return ``out`` as an absolute folder; refuse a non-empty one unless ``overwrite``.

    With ``overwrite`` files of the same name are replaced and the manifest rewritten; other
    files already in the folder are left alone (the manifest lists what belongs to the import).
    """
    path = Path(out).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f"{out}: output exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise OutputExistsError(f"{out}: output folder is not empty (pass overwrite=True / --overwrite)")
    return path


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Validate ``(train, val, test)`` fractions: three non-negative numbers summing to 1."""
    values = tuple(float(f) for f in fractions)
    if len(values) != 3 or any(v < 0 for v in values) or not math.isclose(sum(values), 1.0, abs_tol=1e-6):
        raise DatasetError(
            f"split fractions must be three non-negative numbers summing to 1, got {list(fractions)}"
        )
    return values  # type: ignore[return-value]


def train_val_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Fractions for a source whose test set is official: its train part split train:val only."""
    train, val, _ = check_fractions(fractions)
    total = train + val
    return (1.0, 0.0, 0.0) if total == 0 else (train / total, val / total, 0.0)


def assign_splits(
    groups: Sequence[str],
    strata: Sequence[str],
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
) -> dict[str, str]:
    """Seeded, stratified train/val/test assignment of groups (source images).

    Within each stratum (usually the defect class) the sorted groups are shuffled by a generator
    seeded with ``(seed, crc32(stratum))``; the first ``round(n * val)`` go to val, the next
    ``round(n * test)`` to test and the rest to train. The result depends only on the names,
    the seed and the fractions, never on file system order. Tiles inherit the split of their
    source image, so no image contributes to two splits.

    Args:
        groups: One id per row; repeated ids are one group.
        strata: The stratum of each row (the first row of a group decides the group's stratum).
        seed: Random seed.
        fractions: ``(train, val, test)``, summing to 1.

    Returns:
        ``{group: split}``.
    """
    _, val, test = check_fractions(fractions)
    by_stratum: dict[str, list[str]] = {}
    seen: set[str] = set()
    for group, stratum in zip(groups, strata):
        if group not in seen:
            seen.add(group)
            by_stratum.setdefault(stratum, []).append(group)
    splits: dict[str, str] = {}
    for stratum, members in sorted(by_stratum.items()):
        members = sorted(members)
        rng = np.random.default_rng([seed, zlib.crc32(stratum.encode())])
        order = [members[i] for i in rng.permutation(len(members))]
        n_val = math.floor(len(order) * val + 0.5)
        n_test = min(math.floor(len(order) * test + 0.5), len(order) - n_val)
        for i, group in enumerate(order):
            splits[group] = "val" if i < n_val else "test" if i < n_val + n_test else "train"
    return splits


def tile_origins(length: int, tile: int) -> list[int]:
    """Start offsets of ``tile``-long windows covering ``length``.

    Windows are laid edge to edge; when ``length`` is not a multiple of ``tile`` one last window
    is aligned with the far edge (it overlaps its neighbour), so every pixel is covered.
    """
    if length < tile:
        return []
    starts = list(range(0, length - tile + 1, tile))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


def background_tile_origins(
    mask: np.ndarray, tile: int, count: int, key: str, seed: int = 0
) -> list[tuple[int, int]]:
    """Up to ``count`` non-overlapping ``tile`` x ``tile`` windows lying fully outside ``mask``.

    Candidates are all positions on a ``max(1, tile // 8)`` grid whose window holds no mask
    pixel (checked with an integral image); they are visited in an order seeded by
    ``(seed, crc32(key))`` and kept when they do not overlap an already kept window.

    Args:
        mask: ``bool [H, W]``, True on defects (or inside boxes).
        tile: Window side in pixels.
        count: Windows wanted; fewer come back when the clean area is too small.
        key: Stable name of the image (seeds its own generator).
        seed: Global seed.

    Returns:
        ``[(x, y), ...]`` top-left corners, sorted.
    """
    height, width = mask.shape
    if count <= 0 or height < tile or width < tile:
        return []
    integral = np.pad(mask.astype(np.int32).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    stride = max(1, tile // 8)
    ys = np.arange(0, height - tile + 1, stride)
    xs = np.arange(0, width - tile + 1, stride)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    sums = (
        integral[yy + tile, xx + tile] - integral[yy, xx + tile] - integral[yy + tile, xx] + integral[yy, xx]
    )
    candidates = np.stack([xx[sums == 0], yy[sums == 0]], axis=1)
    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    kept: list[tuple[int, int]] = []
    for x, y in candidates[rng.permutation(len(candidates))]:
        if all(abs(int(x) - kx) >= tile or abs(int(y) - ky) >= tile for kx, ky in kept):
            kept.append((int(x), int(y)))
            if len(kept) == count:
                break
    return sorted(kept)


def tile_name(stem: str, x: int, y: int) -> str:
    """File name of a tile: ``<stem>_x0256_y0000.png``."""
    return f"{stem}_x{x:04d}_y{y:04d}.png"


def make_row(
    image_path: Path | str,
    mask_path: Path | str | None,
    defect_class: str,
    grade: str,
    split: str,
    source: str,
    mask_kind: str,
    origin_path: Path | str,
    tile_xy: tuple[int, int] | None = None,
) -> dict[str, str]:
    """One manifest row; ``defect_class == 'good'`` makes it a good row without mask."""
    good = defect_class == GOOD_CLASS
    return {
        "image_path": str(image_path),
        "mask_path": "" if good or mask_path is None else str(mask_path),
        "label": "good" if good else "defect",
        "defect_class": defect_class,
        "grade": grade,
        "split": split,
        "source": source,
        "mask_kind": "none" if good else mask_kind,
        "origin_path": str(origin_path),
        "tile_x": "" if tile_xy is None else str(tile_xy[0]),
        "tile_y": "" if tile_xy is None else str(tile_xy[1]),
    }


def finish(rows: Iterable[dict[str, str]], out: Path, origin: str | Path) -> pd.DataFrame:
    """Write ``out/manifest.csv`` (validated, atomic) and return it as read back (absolute paths)."""
    frame = pd.DataFrame(list(rows))
    if frame.empty:
        raise DatasetError(f"{origin}: no usable images found")
    frame = frame.sort_values(["split", "defect_class", "image_path"], kind="stable").reset_index(drop=True)
    path = write_manifest(frame, out / MANIFEST_NAME)
    return read_manifest(path)
