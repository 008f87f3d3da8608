"""The manifest: the one table every dataset becomes.

One row per image with the columns of :data:`COLUMNS`. Paths inside the manifest's folder are
stored relative to it, paths outside it (source images referenced in place) absolute; :func:`read_manifest` returns them
resolved to absolute paths, :func:`write_manifest` writes them relative again, so a dataset
folder can be moved as a whole. Extra columns (``mask_kind``, ``donor_path``, ...) are kept.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from anomalib_defectgan.errors import ManifestError, summarize
from anomalib_defectgan.utils.atomic import atomic_path

COLUMNS = ("image_path", "mask_path", "label", "defect_class", "grade", "split", "source")
PATH_COLUMNS = ("image_path", "mask_path")
LABELS = ("good", "defect")
SPLITS = ("train", "val", "test")
MASK_KINDS = ("pixel", "box", "none")
GOOD_CLASS = "good"


def _resolve(value: str, root: Path) -> str:
    if not isinstance(value, str) or not value:
        return ""
    path = Path(value)
    return str(path if path.is_absolute() else (root / path).resolve())


def _relativize(value: str, root: Path) -> str:
    if not isinstance(value, str) or not value:
        return ""
    path = Path(value)
    if not path.is_absolute():
        return path.as_posix()
    try:
        relative = Path(os.path.relpath(path, root))
    except ValueError:  # another drive on Windows
        return path.as_posix()
    return path.as_posix() if relative.parts[:1] == ("..",) else relative.as_posix()


def validate_manifest(frame: pd.DataFrame, origin: str = "manifest", check_files: bool = True) -> pd.DataFrame:
    """Check a manifest table and return it with normalised dtypes.

    Args:
        frame: The table, paths already absolute (or relative to the working directory).
        origin: Name used in error messages (usually the manifest's path).
        check_files: Also check that every referenced image and mask exists.

    Returns:
        The same rows, with empty strings instead of NaN and every column as ``str``.

    Raises:
        ManifestError: Missing columns, unknown labels/splits, inconsistent rows, missing
            files or no rows at all; the message says how many rows and shows the first few.
    """
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ManifestError(f"{origin}: missing column(s) {missing}; a manifest needs {list(COLUMNS)}")
    if frame.empty:
        raise ManifestError(f"{origin}: the manifest has no rows (empty dataset)")
    frame = frame.copy()
    for column in frame.columns:
        if frame[column].dtype == object or column in COLUMNS:
            frame[column] = frame[column].fillna("").astype(str)

    def rows(mask: pd.Series) -> list[str]:
        return [f"row {i + 2} ({frame.at[i, 'image_path']})" for i in frame.index[mask]]

    checks = [
        (~frame["label"].isin(LABELS), f"label not in {list(LABELS)}"),
        (~frame["split"].isin(SPLITS), f"split not in {list(SPLITS)}"),
        (frame["image_path"] == "", "empty image_path"),
        (frame["grade"] == "", "empty grade"),
        ((frame["label"] == "good") & (frame["mask_path"] != ""), "good image with a mask_path"),
        ((frame["label"] == "good") & (frame["defect_class"] != GOOD_CLASS), "good image whose defect_class is not 'good'"),
        ((frame["label"] == "defect") & frame["defect_class"].isin(["", GOOD_CLASS]), "defect without a defect_class"),
    ]
    if "mask_kind" in frame.columns:
        checks.append((~frame["mask_kind"].isin(MASK_KINDS + ("",)), f"mask_kind not in {list(MASK_KINDS)}"))
    for bad, problem in checks:
        if bad.any():
            raise ManifestError(f"{origin}: {problem} in {summarize(rows(bad))}")
    duplicated = frame["image_path"].duplicated()
    if duplicated.any():
        raise ManifestError(f"{origin}: image_path listed twice in {summarize(rows(duplicated))}")
    if check_files:
        for column in PATH_COLUMNS:
            paths = frame[column][frame[column] != ""]
            absent = [p for p in paths if not Path(p).is_file()]
            if absent:
                raise ManifestError(f"{origin}: {column} refers to missing files, {summarize(absent)}")
    return frame.reset_index(drop=True)


def read_manifest(path: str | Path, check_files: bool = True) -> pd.DataFrame:
    """Read and validate a manifest CSV (or parquet); paths come back absolute.

    Args:
        path: ``manifest.csv`` / ``.parquet``, or a folder containing ``manifest.csv``.
        check_files: Check that every referenced file exists.

    Raises:
        ManifestError: Unreadable file or invalid content (see :func:`validate_manifest`).
    """
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.csv"
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    try:
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as err:
        raise ManifestError(f"{path}: cannot parse manifest ({err})") from err
    root = path.parent.resolve()
    for column in PATH_COLUMNS:
        if column in frame.columns:
            frame[column] = [_resolve(v, root) for v in frame[column].fillna("")]
    return validate_manifest(frame, origin=str(path), check_files=check_files)


def write_manifest(frame: pd.DataFrame, path: str | Path, check_files: bool = True) -> Path:
    """Validate and write a manifest atomically, with paths relative to its folder.

    Args:
        frame: Rows with absolute paths (or paths relative to the working directory).
        path: Destination ``.csv`` or ``.parquet``.
        check_files: Check that every referenced file exists before writing.

    Returns:
        The written path.
    """
    path = Path(path)
    frame = frame.copy()
    for column in PATH_COLUMNS:
        if column in frame.columns:
            frame[column] = [_resolve(v, Path.cwd()) for v in frame[column].fillna("")]
    frame = validate_manifest(frame, origin=str(path), check_files=check_files)
    root = path.parent.resolve()
    for column in PATH_COLUMNS:
        frame[column] = [_relativize(v, root) for v in frame[column]]
    ordered = list(COLUMNS) + [c for c in frame.columns if c not in COLUMNS]
    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            frame[ordered].to_parquet(tmp, index=False)
        else:
            frame[ordered].to_csv(tmp, index=False)
    return path


def vocabularies(frame: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Class and grade vocabularies of a manifest: ``(['good', *defect classes], grades)``, sorted."""
    classes = sorted(set(frame["defect_class"]) - {GOOD_CLASS})
    return [GOOD_CLASS, *classes], sorted(set(frame["grade"]))
