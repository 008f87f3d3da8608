"""The new-grade protocol never lets the new grade's defects reach training."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from anomalib_defectgan.benchmark.new_grade_protocol import ARMS, arm_manifest, new_grade_split
from anomalib_defectgan.data.manifest import read_manifest
from anomalib_defectgan.errors import DefectGanError
from tests.helpers import write_blob_dataset


@pytest.fixture
def frame(tmp_path: Path):
    frame = read_manifest(write_blob_dataset(tmp_path / "d", size=32, per_class=4, goods=6))
    frame.loc[(frame["label"] == "good") & (frame.index % 3 == 0), "split"] = "test"
    return frame


def test_arms_share_val_and_test_and_differ_in_training_defects(frame) -> None:
    split = new_grade_split(frame, "dark", seed=1)
    none, gan = arm_manifest(split, "none"), arm_manifest(split, "defectgan")
    for arm in (none, gan):
        train, test = arm[arm["split"] == "train"], arm[arm["split"] == "test"]
        assert not ((train["grade"] == "dark") & (train["label"] == "defect")).any()
        assert set(test["grade"]) == {"dark"} and set(test["label"]) == {"good", "defect"}
        assert set(arm["image_path"][arm["split"] == "train"]).isdisjoint(arm["image_path"][arm["split"] != "train"])
    assert (gan[gan["split"] == "train"]["label"] == "good").all()
    assert set(none[(none["split"] == "train") & (none["label"] == "defect")]["grade"]) == {"bright"}
    assert none[none["split"] == "val"]["image_path"].tolist() == gan[gan["split"] == "val"]["image_path"].tolist()
    dark_defects = frame[(frame["grade"] == "dark") & (frame["label"] == "defect")]
    assert set(dark_defects["image_path"]) <= set(none[none["split"] == "test"]["image_path"])


def test_few_shot_donors_and_bad_input(frame) -> None:
    split = new_grade_split(frame, "dark", donor_shots=1)
    assert split.donors.groupby("defect_class").size().max() == 1
    with pytest.raises(DefectGanError, match="not in the manifest"):
        new_grade_split(frame, "blue")
    with pytest.raises(DefectGanError, match="unknown arm"):
        arm_manifest(split, "gaussian")


def test_few_shot_patches_hold_out_whole_images(tmp_path: Path) -> None:
    from anomalib_defectgan.benchmark.few_shot_patches import clean_windows, few_shot_patch_split
    from anomalib_defectgan.data.image_io import read_mask

    frame = read_manifest(write_blob_dataset(tmp_path / "d", size=48, per_class=5, goods=2))
    split = few_shot_patch_split(frame, tmp_path / "patches", patch=16, test_per_class=2, shots=1, seed=0)
    assert split.donors.groupby("defect_class").size().tolist() == [1, 1], "one shot per class"
    assert split.test.groupby("label").size()["defect"] == 4, "test_per_class images of each class"
    test_origins = set(split.test["origin_path"])
    assert test_origins.isdisjoint(split.donors["origin_path"]) and test_origins.isdisjoint(split.train_goods["origin_path"])
    for _, row in pd.concat([split.test, split.train_goods, split.donors]).iterrows():
        if row["label"] == "defect":
            assert read_mask(row["mask_path"]).any(), "defect patches contain their defect"
        else:
            assert row["mask_path"] == ""
    import numpy as np

    mask = np.zeros((20, 20), bool)
    mask[5, 5] = True
    corners = clean_windows(mask, 8)
    assert len(corners) and all(not mask[y:y + 8, x:x + 8].any() for y, x in corners)
    assert [6, 6] in corners.tolist() and [0, 0] not in corners.tolist()


def test_few_shot_arm_manifests_are_valid_for_every_arm(tmp_path: Path) -> None:
    """The none arm trains on the shots and validates on copies of them: no file listed twice."""
    from anomalib_defectgan.benchmark.few_shot_patches import few_shot_patch_split
    from anomalib_defectgan.data.image_io import read_image
    from anomalib_defectgan.data.manifest import write_manifest

    frame = read_manifest(write_blob_dataset(tmp_path / "d", size=48, per_class=5, goods=2))
    split = few_shot_patch_split(frame, tmp_path / "patches", patch=16, test_per_class=2, shots=1, seed=0)
    for arm in ARMS:
        path = write_manifest(arm_manifest(split, arm), tmp_path / arm / "manifest.csv")
        rows = read_manifest(path)
        assert rows["image_path"].is_unique
    val_defects = split.val[split.val["label"] == "defect"].sort_values("origin_path")
    donors = split.donors.sort_values("origin_path")
    assert set(val_defects["image_path"]).isdisjoint(donors["image_path"])
    for val_path, donor_path in zip(val_defects["image_path"], donors["image_path"], strict=True):
        assert (read_image(val_path) == read_image(donor_path)).all(), "validation copies are the shots' pixels"


@pytest.mark.realdata
def test_few_shot_split_of_the_real_sd_saliency_gives_valid_arm_manifests(tmp_path: Path) -> None:
    from anomalib_defectgan.benchmark.few_shot_patches import few_shot_patch_split
    from anomalib_defectgan.data.datasets import sd_saliency
    from anomalib_defectgan.data.manifest import write_manifest
    from tests.conftest import shared_dataset

    frame = sd_saliency.to_manifest(shared_dataset("sd-saliency-900"), tmp_path / "sd", background_tiles=0)
    split = few_shot_patch_split(frame, tmp_path / "patches", patch=128, test_per_class=100, shots=10, seed=0)
    assert split.donors.groupby("defect_class").size().to_dict() == {"inclusion": 10, "patches": 10, "scratches": 10}
    assert (split.test["label"] == "defect").sum() == 300
    assert set(split.test["origin_path"]).isdisjoint(pd.concat([split.donors, split.train_goods])["origin_path"])
    for arm in ARMS:
        rows = read_manifest(write_manifest(arm_manifest(split, arm), tmp_path / arm / "manifest.csv"))
        assert rows["image_path"].is_unique and set(rows["split"]) == {"train", "val", "test"}


def test_min_test_goods_moves_whole_source_images_and_keeps_half_for_training(frame) -> None:
    goods = frame.index[(frame["grade"] == "dark") & (frame["label"] == "good")]
    frame = frame.copy()
    frame["origin_path"] = ""
    frame.loc[goods, "split"] = "train"
    frame.loc[goods, "origin_path"] = [f"roll/{i // 2}.png" for i in range(len(goods))]  # two tiles per image
    frame.loc[goods[:2], "split"] = "test"
    plain = new_grade_split(frame, "dark", seed=0)
    assert (plain.test["label"] == "good").sum() == 2
    split = new_grade_split(frame, "dark", seed=0, min_test_goods=100)
    test_goods = split.test[split.test["label"] == "good"]
    kept = pd.concat([split.train_goods, split.val[split.val["grade"] == "dark"]])
    assert len(test_goods) > 2 and set(test_goods["origin_path"]).isdisjoint(kept["origin_path"])
    assert kept["origin_path"].nunique() == 1, "of the two training source images, half stays"
    assert len(test_goods) + len(kept) == len(goods)
    assert len(new_grade_split(frame, "dark", seed=0, min_test_goods=2).test) == len(plain.test), "enough already"


def test_few_shot_min_test_goods_takes_clean_test_patches_from_training_images(tmp_path: Path) -> None:
    from anomalib_defectgan.benchmark.few_shot_patches import few_shot_patch_split

    frame = read_manifest(write_blob_dataset(tmp_path / "d", size=48, per_class=8, goods=2))
    plain = few_shot_patch_split(frame, tmp_path / "p0", patch=16, test_per_class=2, shots=1, seed=0)
    more = few_shot_patch_split(frame, tmp_path / "p1", patch=16, test_per_class=2, shots=1, seed=0, min_test_goods=8)

    def count(split) -> int:
        return int((split.test["label"] == "good").sum())

    assert count(plain) == 4 and count(more) == 8
    assert len(more.train_goods) < len(plain.train_goods)
    used = pd.concat([more.train_goods, more.val[more.val["label"] == "good"]])
    assert set(more.test["origin_path"]).isdisjoint(used["origin_path"])
    assert (more.test["label"] == "defect").sum() == (plain.test["label"] == "defect").sum()
