"""Manifest read/write/validation."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from anomalib_defectgan.data.manifest import COLUMNS, read_manifest, vocabularies, write_manifest
from anomalib_defectgan.errors import ManifestError
from tests.helpers import write_blob_dataset


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    return write_blob_dataset(tmp_path / "data")


def test_round_trip_keeps_rows_and_resolves_paths(manifest: Path, tmp_path: Path) -> None:
    frame = read_manifest(manifest)
    assert list(frame.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in frame["image_path"])
    stored = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    assert not any(Path(p).is_absolute() for p in stored["image_path"]), "paths are stored relative"
    copy = write_manifest(frame, tmp_path / "data" / "copy.csv")
    again = read_manifest(copy)
    pd.testing.assert_frame_equal(frame, again)


def test_dataset_folder_can_move(manifest: Path, tmp_path: Path) -> None:
    moved = tmp_path / "moved"
    manifest.parent.rename(moved)
    frame = read_manifest(moved)
    assert all(str(p).startswith(str(moved.resolve())) for p in frame["image_path"])


def test_vocabularies_put_good_first(manifest: Path) -> None:
    classes, grades = vocabularies(read_manifest(manifest))
    assert classes == ["good", "line", "spot"]
    assert grades == ["bright", "dark"]


def _edit(manifest: Path, change) -> Path:
    frame = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    change(frame)
    frame.to_csv(manifest, index=False)
    return manifest


def test_missing_column_is_named(manifest: Path) -> None:
    _edit(manifest, lambda f: f.drop(columns=["grade"], inplace=True))
    with pytest.raises(ManifestError, match=r"missing column.*grade"):
        read_manifest(manifest)


def test_unknown_split_names_the_row(manifest: Path) -> None:
    def change(frame: pd.DataFrame) -> None:
        frame.loc[3, "split"] = "training"

    _edit(manifest, change)
    with pytest.raises(ManifestError, match=r"split not in .* row 5 "):
        read_manifest(manifest)


def test_missing_files_are_counted(manifest: Path) -> None:
    frame = read_manifest(manifest)
    for path in frame["image_path"][:7]:
        Path(path).unlink()
    with pytest.raises(ManifestError, match=r"missing files, 7: .*\(2 more\)"):
        read_manifest(manifest)
    assert len(read_manifest(manifest, check_files=False)) == len(frame)


def test_empty_manifest_is_refused(manifest: Path) -> None:
    _edit(manifest, lambda f: f.drop(index=f.index, inplace=True))
    with pytest.raises(ManifestError, match="no rows"):
        read_manifest(manifest)


def test_good_row_with_mask_is_refused(manifest: Path) -> None:
    frame = read_manifest(manifest)
    good = frame.index[frame["label"] == "good"][0]
    frame.loc[good, "mask_path"] = frame["mask_path"][frame["label"] == "defect"].iloc[0]
    with pytest.raises(ManifestError, match="good image with a mask_path"):
        write_manifest(frame, manifest)
    assert len(read_manifest(manifest)) == len(frame), "a refused write leaves the old manifest intact"


def test_unparsable_file_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "manifest.csv"
    bad.write_bytes(b"\xff\xfe\x00garbage\x00\n\x01")
    with pytest.raises(ManifestError, match=str(bad)):
        read_manifest(bad)


def test_paths_outside_the_manifest_folder_stay_absolute(manifest: Path, tmp_path: Path) -> None:
    frame = read_manifest(manifest)
    elsewhere = write_manifest(frame, tmp_path / "elsewhere" / "manifest.csv")
    stored = pd.read_csv(elsewhere, dtype=str, keep_default_na=False)
    assert all(Path(p).is_absolute() for p in stored["image_path"])
    (tmp_path / "elsewhere").rename(tmp_path / "moved")
    assert read_manifest(tmp_path / "moved" / "manifest.csv")["image_path"].tolist() == frame["image_path"].tolist()
