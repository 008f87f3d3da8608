"""AITEX adapter: the real copy (tiled) and a tiny folder written here."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from anomalib_defectgan.data.datasets import aitex
from anomalib_defectgan.data.datasets.common import DatasetError, DatasetWarning
from anomalib_defectgan.data.image_io import read_image, read_mask, write_image
from tests.conftest import shared_dataset


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, list[str]]:
    root = shared_dataset("aitex")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = aitex.to_manifest(root, tmp_path_factory.mktemp("aitex") / "out")
    return frame, [str(w.message) for w in caught if issubclass(w.category, DatasetWarning)]


def _source_mask(origin: Path) -> np.ndarray:
    masks = sorted((origin.parent.parent / "Mask_images").glob(f"{origin.stem}_mask*.png"))
    return np.logical_or.reduce([read_mask(m) for m in masks])


@pytest.mark.realdata
def test_real_aitex_has_grades_and_classes(real: tuple[pd.DataFrame, list[str]]) -> None:
    frame, messages = real
    assert frame["grade"].nunique() >= 6
    assert set(frame[frame["label"] == "good"]["grade"]) == {f"fabric_0{i}" for i in range(7)}
    assert frame[frame["label"] == "defect"]["grade"].nunique() >= 6
    assert (frame[frame["label"] == "good"].groupby("grade").size() == 8 * 16).all()  # 8 images x 16 tiles
    assert frame["defect_class"].str.fullmatch(r"good|defect_\d{3}").all()
    origins = {Path(p).stem for p in frame["origin_path"]}
    assert not origins & {"0100_025_08", "0106_010_03", "0094_027_05"}  # no mask, empty mask, mask only
    assert any("0100_025_08.png" in m and "without mask" in m for m in messages)
    assert any("0106_010_03.png" in m and "empty mask" in m for m in messages)
    assert (frame.groupby("origin_path")["split"].nunique() == 1).all()


@pytest.mark.realdata
def test_real_aitex_tiles_match_the_source(real: tuple[pd.DataFrame, list[str]]) -> None:
    frame, _ = real
    defects = frame[frame["label"] == "defect"]
    double = defects[defects["origin_path"].str.contains("0044_019_04|0097_030_03")]
    assert len(double) > 0  # the images with _mask1 + _mask2
    sample = pd.concat(
        [double, defects.iloc[::6], frame[frame["label"] == "good"].iloc[::97]]
    ).drop_duplicates("image_path")
    for row in sample.itertuples():
        x, y = int(row.tile_x), int(row.tile_y)
        origin = Path(row.origin_path)
        tile = read_image(row.image_path)
        assert tile.shape == (256, 256, 1)
        np.testing.assert_array_equal(tile, read_image(origin)[y : y + 256, x : x + 256])  # LA files become L
        if row.label == "defect":
            expected = _source_mask(origin)[y : y + 256, x : x + 256]
            assert expected.any()
            np.testing.assert_array_equal(read_mask(row.mask_path), expected)
            assert row.defect_class == f"defect_{origin.stem.split('_')[1]}"
        else:
            assert origin.parent.parent.name == "NoDefect_images" and row.mask_path == ""


def _tiny(root: Path) -> Path:
    """Two 16x64 defect images (one with _mask1/_mask2) and one good image; 16 px tiles."""
    rng = np.random.default_rng(0)
    for stem in ("0001_002_00", "0002_019_01"):
        write_image(root / "Defect_images" / f"{stem}.png", rng.integers(0, 255, (16, 64), dtype=np.uint8))
    first = np.zeros((16, 64), np.uint8)
    first[4:8, 2:5] = 200
    first[0, 40] = 100  # anti-aliased below 128: not a defect, its tile is skipped
    write_image(root / "Mask_images" / "0001_002_00_mask.png", first)
    second_a, second_b = np.zeros((16, 64), np.uint8), np.zeros((16, 64), np.uint8)
    second_a[1:3, 17:20] = 255
    second_b[10:12, 50:52] = 255
    write_image(root / "Mask_images" / "0002_019_01_mask1.png", second_a)
    write_image(root / "Mask_images" / "0002_019_01_mask2.png", second_b)
    write_image(
        root / "NoDefect_images" / "roll-a" / "0001_000_00.png",
        rng.integers(0, 255, (16, 64), dtype=np.uint8),
    )
    return root


def test_tiny_aitex_tiles(tmp_path: Path) -> None:
    frame = aitex.to_manifest(_tiny(tmp_path / "src"), tmp_path / "out", tile_size=16)
    defects = frame[frame["label"] == "defect"]
    assert sorted(zip(defects["origin_path"].map(lambda p: Path(p).stem), defects["tile_x"])) == [
        ("0001_002_00", "0"),
        ("0002_019_01", "16"),
        ("0002_019_01", "48"),
    ]
    assert set(zip(defects["defect_class"], defects["grade"])) == {
        ("defect_002", "fabric_00"),
        ("defect_019", "fabric_01"),
    }
    goods = frame[frame["label"] == "good"]
    assert len(goods) == 4 and set(goods["grade"]) == {"fabric_00"}
    assert all("/images/good/roll-a/" in p for p in goods["image_path"])


def test_mask_of_another_size_and_bad_names_are_errors(tmp_path: Path) -> None:
    root = _tiny(tmp_path / "src")
    write_image(root / "Mask_images" / "0001_002_00_mask.png", np.zeros((16, 60), np.uint8))
    with pytest.raises(
        DatasetError, match=r"0001_002_00_mask.png: mask size \(60, 16\) differs from its image"
    ):
        aitex.to_manifest(root, tmp_path / "out", tile_size=16)
    root = _tiny(tmp_path / "src2")
    write_image(root / "Defect_images" / "scan.png", np.zeros((16, 64), np.uint8))
    with pytest.raises(DatasetError, match=r"scan.png: file name is not NNNN_DDD_FF"):
        aitex.to_manifest(root, tmp_path / "out", tile_size=16)
    with pytest.raises(DatasetError, match=r"expected Defect_images/"):
        aitex.to_manifest(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()
