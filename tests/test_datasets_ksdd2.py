"""KolektorSDD2 adapter on tiny train/test folders written here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from anomalib_defectgan.data.datasets import ksdd2
from anomalib_defectgan.data.datasets.common import DatasetError
from anomalib_defectgan.data.image_io import read_mask, write_image
from anomalib_defectgan.errors import ImageReadError


def _sample(root: Path, part: str, stem: str, defect: bool, ones: bool = False) -> np.ndarray:
    write_image(
        root / part / f"{stem}.png",
        np.random.default_rng(len(stem)).integers(0, 255, (30, 12, 3), dtype=np.uint8),
    )
    mask = np.zeros((30, 12), np.uint8)
    if defect:
        mask[5:9, 2:6] = 1 if ones else 255
    truth = mask > 0
    if not defect:
        mask[0, 0] = 40  # faint anti-aliasing (< 128) in a 0/255 file is not a defect
    write_image(root / part / f"{stem}_GT.png", mask)
    return truth


def test_labels_follow_the_ground_truth_and_test_folder_is_test(tmp_path: Path) -> None:
    root = tmp_path / "src"
    truth = {}
    for i in range(20):
        truth[f"train/{10000 + i}"] = _sample(root, "train", str(10000 + i), defect=i % 4 == 0, ones=i == 4)
    for i in range(4):
        truth[f"test/{20000 + i}"] = _sample(root, "test", str(20000 + i), defect=i < 2)
    frame = ksdd2.to_manifest(root, tmp_path / "out", seed=2)
    assert len(frame) == 24
    for row in frame.itertuples():
        key = f"{Path(row.image_path).parent.name}/{Path(row.image_path).stem}"
        assert row.label == ("defect" if truth[key].any() else "good")
        assert (row.split == "test") == key.startswith("test/")
        if row.label == "defect":
            assert row.defect_class == "defect" and row.mask_kind == "pixel"
            np.testing.assert_array_equal(read_mask(row.mask_path), truth[key])  # also the 0/1-stored one
        else:
            assert row.mask_path == "" and row.mask_kind == "none"
    train = frame[frame["split"] != "test"]
    # 15 good + 5 defect in train/, val gets round(n * 0.15 / 0.85) of each label.
    assert train.groupby(["label", "split"]).size().to_dict() == {
        ("defect", "train"): 4,
        ("defect", "val"): 1,
        ("good", "train"): 12,
        ("good", "val"): 3,
    }
    again = ksdd2.to_manifest(root, tmp_path / "out2", seed=2)
    assert again["split"].equals(frame["split"])


def test_missing_ground_truth_or_image_is_counted_and_named(tmp_path: Path) -> None:
    root = tmp_path / "src"
    _sample(root, "train", "10000", defect=True)
    write_image(root / "train" / "10001.png", np.zeros((30, 12), np.uint8))
    write_image(root / "test" / "20000_GT.png", np.zeros((30, 12), np.uint8))
    with pytest.raises(
        DatasetError, match=r"missing, 2: test/20000 \(for 20000_GT.png\), train/10001_GT \(for 10001.png\)"
    ):
        ksdd2.to_manifest(root, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_ground_truth_of_another_size_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "src"
    _sample(root, "train", "10000", defect=True)
    write_image(root / "train" / "10000_GT.png", np.zeros((31, 12), np.uint8))
    with pytest.raises(ImageReadError, match=r"10000_GT.png: mask size 12x31 differs from its image 12x30"):
        ksdd2.to_manifest(root, tmp_path / "out")


def test_not_a_ksdd2_folder(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    with pytest.raises(DatasetError, match="expected train/ and/or test/"):
        ksdd2.to_manifest(tmp_path / "src", tmp_path / "out")
