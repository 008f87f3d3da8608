"""DefectManifest: an anomalib datamodule over a manifest, with per-split row filters.

anomalib's ``Folder`` puts every abnormal image in the test split and ``Tabular`` refuses
abnormal training rows. A supervised defect classifier needs real defects in training, and the
new-grade experiment needs "good images of grade X plus real defects of grades Y" for training
and "grade X only" for testing. Each split is therefore a filter over the manifest's rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from anomalib.data.datamodules.base.image import AnomalibDataModule
from anomalib.data.datasets.base.image import AnomalibDataset
from anomalib.data.utils import LabelName, Split, ValSplitMode
from torchvision.transforms.v2 import Transform

from anomalib_defectgan.data.manifest import read_manifest
from anomalib_defectgan.errors import DefectGanError, ManifestError

FILTER_KEYS = ("splits", "labels", "grades", "exclude_grades", "classes")


def select_rows(frame: pd.DataFrame, spec: dict[str, Any], origin: str = "manifest") -> pd.DataFrame:
    """Rows of ``frame`` matching a filter.

    Args:
        frame: Manifest rows.
        spec: Any of ``splits``, ``labels``, ``grades``, ``exclude_grades``, ``classes`` (lists of
            names; a missing key keeps everything). ``classes`` filters defect rows only: good rows
            are kept when ``labels`` allows them.
        origin: Name for error messages.

    Raises:
        DefectGanError: Unknown filter keys or names that match nothing in the manifest.
    """
    unknown = sorted(set(spec) - set(FILTER_KEYS))
    if unknown:
        raise DefectGanError(f"{origin}: unknown row filter key(s) {unknown}; known: {list(FILTER_KEYS)}")
    keep = pd.Series(True, index=frame.index)
    for key, column in (("splits", "split"), ("labels", "label"), ("grades", "grade")):
        if spec.get(key) is not None:
            missing = sorted(set(spec[key]) - set(frame[column]))
            if key == "grades" and missing:
                raise ManifestError(f"{origin}: grades {missing} not in the manifest; grades: {sorted(set(frame['grade']))}")
            keep &= frame[column].isin(spec[key])
    if spec.get("exclude_grades"):
        keep &= ~frame["grade"].isin(spec["exclude_grades"])
    if spec.get("classes") is not None:
        keep &= (frame["label"] == "good") | frame["defect_class"].isin(spec["classes"])
    return frame[keep]


class ManifestDataset(AnomalibDataset):
    """anomalib dataset over manifest rows (good and defect rows may both be in any split)."""

    def __init__(self, name: str, rows: pd.DataFrame, split: Split, augmentations: Transform | None = None) -> None:
        super().__init__(augmentations=augmentations)
        self._name = name
        samples = pd.DataFrame({
            "image_path": rows["image_path"].to_numpy(),
            "mask_path": rows["mask_path"].to_numpy(),
            "label_index": [LabelName.ABNORMAL if label == "defect" else LabelName.NORMAL for label in rows["label"]],
            "split": split.value,
            "defect_class": rows["defect_class"].to_numpy(),
            "grade": rows["grade"].to_numpy(),
        })
        samples["label_index"] = samples["label_index"].astype("Int64")
        samples.attrs["task"] = "segmentation" if (samples["mask_path"] != "").any() else "classification"
        self.samples = samples

    @property
    def name(self) -> str:
        """Dataset name."""
        return self._name


class DefectManifest(AnomalibDataModule):
    """anomalib datamodule reading a manifest, each split chosen by a row filter.

    Args:
        manifest: ``manifest.csv`` (or its folder).
        name: Dataset name used by anomalib for result folders.
        train: Row filter of the training split (see :func:`select_rows`). Default: good rows
            of split ``train``.
        val: Row filter of the validation split. Default: rows of split ``val``; falls back to
            the test rows when that is empty.
        test: Row filter of the test split. Default: rows of split ``test``.
        train_batch_size: Training batch size.
        eval_batch_size: Validation/test batch size.
        num_workers: DataLoader workers.
        train_augmentations: Training-only augmentations (torchvision v2).
        seed: Seed of anomalib's random splits (unused by the filters themselves).

    Example:
        The new-grade experiment: train on good ``pickled`` images and the other grades' real
        defects, test on ``pickled`` only::

            DefectManifest("datasets/synthetic_steel",
                           train={"labels": ["good"], "grades": ["pickled"], "splits": ["train"]},
                           test={"grades": ["pickled"], "splits": ["test"]})
    """

    def __init__(
        self,
        manifest: str,
        name: str = "manifest",
        train: dict[str, Any] | None = None,
        val: dict[str, Any] | None = None,
        test: dict[str, Any] | None = None,
        train_batch_size: int = 16,
        eval_batch_size: int = 16,
        num_workers: int = 0,
        train_augmentations: Transform | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(train_batch_size=train_batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers,
                         train_augmentations=train_augmentations, val_split_mode=ValSplitMode.FROM_DIR, seed=seed)
        self.manifest = manifest
        self._name = name
        self.filters = {
            "train": dict(train) if train is not None else {"splits": ["train"], "labels": ["good"]},
            "val": dict(val) if val is not None else {"splits": ["val"]},
            "test": dict(test) if test is not None else {"splits": ["test"]},
        }

    @property
    def name(self) -> str:
        """Dataset name."""
        return self._name

    def _setup(self, _stage: str | None = None) -> None:
        frame = read_manifest(self.manifest)
        origin = str(Path(self.manifest))
        rows = {split: select_rows(frame, spec, origin) for split, spec in self.filters.items()}
        for split in ("train", "test"):
            if rows[split].empty:
                raise ManifestError(f"{origin}: the {split} filter {self.filters[split]} selects no rows")
        if rows["val"].empty:
            rows["val"] = rows["test"]
        self.train_data = ManifestDataset(self.name, rows["train"], Split.TRAIN)
        self.val_data = ManifestDataset(self.name, rows["val"], Split.VAL)
        self.test_data = ManifestDataset(self.name, rows["test"], Split.TEST)

    def _create_test_split(self) -> None:
        """The test rows are exactly what the ``test`` filter selects."""
