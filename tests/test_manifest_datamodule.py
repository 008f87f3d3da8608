"""DefectManifest: anomalib datamodule with per-split row filters."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from anomalib_defectgan.data.manifest_datamodule import DefectManifest
from anomalib_defectgan.errors import DefectGanError, ManifestError
from tests.helpers import write_blob_dataset


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    return write_blob_dataset(tmp_path / "data", size=32)


def test_new_grade_filters_put_other_grades_defects_in_training(manifest: Path) -> None:
    dm = DefectManifest(str(manifest), train={"grades": ["dark"], "labels": ["good"], "splits": ["train"]},
                        test={"grades": ["bright"]}, train_batch_size=4, eval_batch_size=4)
    dm.setup()
    train, test = dm.train_data.samples, dm.test_data.samples
    assert set(train["grade"]) == {"dark"} and (train["label_index"] == 0).all()
    assert set(test["grade"]) == {"bright"} and set(test["label_index"]) == {0, 1}

    supervised = DefectManifest(str(manifest), train={"splits": ["train"]}, test={"splits": ["val"]})
    supervised.setup()
    assert set(supervised.train_data.samples["label_index"]) == {0, 1}, "defects may be in training"

    batch = next(iter(supervised.train_dataloader()))
    assert batch.image.shape[1] == 3 and batch.gt_mask.shape[-2:] == (32, 32)
    defects = batch.gt_label.bool()
    assert defects.any()
    assert all(batch.gt_mask[i].any() for i in torch.nonzero(defects).flatten())
    assert not batch.gt_mask[~defects].any()


def test_bad_filters_are_clear(manifest: Path) -> None:
    with pytest.raises(DefectGanError, match="unknown row filter"):
        DefectManifest(str(manifest), train={"grade": ["dark"]}).setup()
    with pytest.raises(ManifestError, match=r"grades \['nope'\] not in the manifest"):
        DefectManifest(str(manifest), test={"grades": ["nope"]}).setup()
    with pytest.raises(ManifestError, match="selects no rows"):
        DefectManifest(str(manifest), train={"splits": ["test"]}).setup()
