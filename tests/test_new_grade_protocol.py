"""The new-grade protocol never lets the new grade's defects reach training."""

from __future__ import annotations

from pathlib import Path

import pytest

from anomalib_defectgan.benchmark.new_grade_protocol import arm_manifest, new_grade_split
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
