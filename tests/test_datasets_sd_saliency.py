"""SD-saliency-900 adapter: the real copy and a tiny folder written here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from anomalib_defectgan.data.datasets import sd_saliency
from anomalib_defectgan.data.datasets.common import DatasetError
from anomalib_defectgan.data.image_io import read_image, read_mask, write_image
from tests.conftest import shared_dataset


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    root = shared_dataset("sd-saliency-900")
    return sd_saliency.to_manifest(
        root, tmp_path_factory.mktemp("sd") / "out", background_tiles=2, tile_size=64
    )


@pytest.mark.realdata
def test_real_sd_saliency_gives_900_defect_rows_in_3_classes(real: pd.DataFrame) -> None:
    defects = real[real["label"] == "defect"]
    assert len(defects) == 900
    assert defects["defect_class"].value_counts().to_dict() == {
        "inclusion": 300,
        "patches": 300,
        "scratches": 300,
    }
    assert set(defects["mask_kind"]) == {"pixel"}
    assert all(Path(p).parent.name == "masks" for p in defects["mask_path"])  # the source masks, in place


@pytest.mark.realdata
def test_real_sd_saliency_good_tiles_lie_outside_the_source_mask(real: pd.DataFrame) -> None:
    goods = real[real["label"] == "good"]
    # Up to two per image; most 200 px images have room for two 64 px tiles beside the defect.
    assert 900 < len(goods) <= 1800
    assert goods.groupby("origin_path").size().max() == 2
    splits = real.set_index("image_path")["split"]
    for row in goods.iloc[::7].itertuples():
        x, y = int(row.tile_x), int(row.tile_y)
        source_mask = read_mask(Path(row.origin_path).parent.parent / "masks" / Path(row.origin_path).name)
        assert source_mask.any() and not source_mask[y : y + 64, x : x + 64].any()
        tile = read_image(row.image_path)
        assert tile.shape == (64, 64, 1)
        np.testing.assert_array_equal(tile, read_image(row.origin_path)[y : y + 64, x : x + 64])
        assert row.split == splits[row.origin_path] and row.mask_path == ""


def _folder(root: Path, names: list[str], masks: list[str]) -> Path:
    for name in names:
        write_image(root / "images" / f"{name}.png", np.full((48, 48), 100, np.uint8))
    for name in masks:
        mask = np.zeros((48, 48), bool)
        mask[20:28, :] = True  # a horizontal band: clean tiles above and below
        write_image(root / "masks" / f"{name}.png", mask)
    return root


def test_good_tiles_are_deterministic_and_sized_by_option(tmp_path: Path) -> None:
    root = _folder(tmp_path / "src", ["In_1", "Pa_1", "Sc_1"], ["In_1", "Pa_1", "Sc_1"])
    first = sd_saliency.to_manifest(root, tmp_path / "a", background_tiles=4, tile_size=16, seed=5)
    second = sd_saliency.to_manifest(root, tmp_path / "b", background_tiles=4, tile_size=16, seed=5)
    columns = ["label", "defect_class", "split", "tile_x", "tile_y"]
    assert first[columns].equals(second[columns])
    goods = first[first["label"] == "good"]
    assert len(goods) == 3 * 4
    for row in goods.itertuples():
        assert read_image(row.image_path).shape == (16, 16, 1)
        assert int(row.tile_y) + 16 <= 20 or int(row.tile_y) >= 28
    assert len(sd_saliency.to_manifest(root, tmp_path / "c", background_tiles=0)) == 3


def test_images_without_mask_are_counted_and_named(tmp_path: Path) -> None:
    root = _folder(tmp_path / "src", ["In_1", "In_2", "Pa_7"], ["In_1"])
    with pytest.raises(DatasetError, match=r"mask\(s\) in .*masks missing, 2: In_2.png, Pa_7.png"):
        sd_saliency.to_manifest(root, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_mask_of_another_size_is_an_error(tmp_path: Path) -> None:
    root = _folder(tmp_path / "src", ["In_1"], [])
    write_image(root / "masks" / "In_1.png", np.zeros((40, 48), np.uint8))
    with pytest.raises(
        DatasetError, match=r"In_1.png: mask size \(48, 40\) differs from its image In_1.png \(48, 48\)"
    ):
        sd_saliency.to_manifest(root, tmp_path / "out")


def test_not_an_sd_saliency_folder(tmp_path: Path) -> None:
    (tmp_path / "src" / "images").mkdir(parents=True)
    with pytest.raises(DatasetError, match="expected images/ and masks/"):
        sd_saliency.to_manifest(tmp_path / "src", tmp_path / "out")
