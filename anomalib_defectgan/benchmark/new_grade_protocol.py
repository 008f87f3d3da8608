"""The new-grade protocol: which manifest rows each arm trains, validates and tests on.

A grade is "new" when it has good images but no defect images yet. Its real defects are used
for testing only. Every arm trains on the new grade's good training images; arms differ in where
training defects come from:

* ``none``: the other grades' real training defects, as they are;
* ``perlin`` / ``cutpaste`` / ``nsa`` / ``defectgan``: synthetic defects painted on the new grade's
  good training images by that generator (donors: the other grades' training defects; ``nsa`` is
  the Poisson-blended, scale-jittered copy-paste of ``CutPasteGenerator``).

Validation (where anomalib picks the decision threshold) is what a plant has for a new grade:
the ``none`` arm validates on the new grade's good validation images plus the other grades' real
validation defects; a generator arm by default paints its synthetic defects on those good
validation images instead (``ClassifierSettings.synthetic_val``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from anomalib_defectgan.errors import DefectGanError

ARMS = ("none", "perlin", "cutpaste", "nsa", "defectgan")
#: Test images of each kind a verdict needs; fewer and results.md says the numbers mean little.
MIN_TEST_IMAGES = 100
#: Share of a new grade's good source images that always stays for training and validation.
MIN_TRAIN_SHARE = 0.5


@dataclass
class NewGradeSplit:
    """Rows of the protocol (absolute paths, manifest columns)."""

    train_goods: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    donors: pd.DataFrame


def _take(frame: pd.DataFrame, fraction: float, rng: np.random.Generator) -> pd.Series:
    chosen = pd.Series(False, index=frame.index)
    # At least 2 (a synthetic validation split needs two good images), never all of them.
    count = min(len(frame) - 1, max(2, round(len(frame) * fraction)))
    if count > 0:
        chosen[rng.choice(frame.index.to_numpy(), count, replace=False)] = True
    return chosen


def _shots(defects: pd.DataFrame, shots: int | None, rng: np.random.Generator) -> pd.DataFrame:
    if shots is None:
        return defects
    keep = [group.loc[rng.permutation(group.index)[:shots]] for _, group in defects.groupby("defect_class")]
    return pd.concat(keep).sort_index()


def _source_images(rows: pd.DataFrame) -> pd.Series:
    """The image each row was cut from (``origin_path`` of imported tiles, else the row's own file)."""
    if "origin_path" not in rows.columns:
        return rows["image_path"]
    origin = rows["origin_path"].fillna("").astype(str)
    return origin.where(origin != "", rows["image_path"])


def _more_test_goods(rest: pd.DataFrame, have: int, wanted: int, rng: np.random.Generator,
                     keep_share: float = MIN_TRAIN_SHARE) -> pd.Index:
    """Rows of ``rest`` to move into the test split so it holds about ``wanted`` good images.

    Whole source images move (tiles of one image never straddle train and test), in a seeded
    order, and at least ``keep_share`` of the source images stay for training and validation.
    """
    if have >= wanted or rest.empty:
        return rest.index[:0]
    sources = _source_images(rest)
    names = list(dict.fromkeys(sources))
    order = [names[i] for i in rng.permutation(len(names))]
    movable = len(names) - max(1, math.ceil(len(names) * keep_share))
    moved: list[str] = []
    for name in order[:max(0, movable)]:
        if have >= wanted:
            break
        moved.append(name)
        have += int((sources == name).sum())
    return rest.index[sources.isin(moved).to_numpy()]


def new_grade_split(frame: pd.DataFrame, new_grade: str, val_fraction: float = 0.2, donor_shots: int | None = None,
                    seed: int = 0, min_test_goods: int = 0) -> NewGradeSplit:
    """Split a manifest for the new-grade experiment.

    Args:
        frame: Manifest rows (:func:`~anomalib_defectgan.data.manifest.read_manifest`).
        new_grade: The grade treated as new (its defects only in the test split).
        val_fraction: Share of the new grade's non-test good images used for validation when
            the manifest has no ``val`` good images of that grade.
        donor_shots: Keep at most this many real defect images per class as donors (few-shot).
        seed: Seed of the validation carve-out and the few-shot choice.
        min_test_goods: When the manifest's test split holds fewer good images of the new grade,
            move good source images from its training pool into the test split until it holds
            this many, keeping at least half of them (``MIN_TRAIN_SHARE``) for training and
            validation (the test split then says how many it got).

    Raises:
        DefectGanError: Unknown grade, or a grade without good images, or no donors.
    """
    grades = sorted(set(frame["grade"]))
    if new_grade not in grades:
        raise DefectGanError(f"new grade {new_grade!r} is not in the manifest; grades: {grades}")
    rng = np.random.default_rng(seed)
    mine, others = frame[frame["grade"] == new_grade], frame[frame["grade"] != new_grade]
    goods = mine[mine["label"] == "good"]
    test_goods = goods[goods["split"] == "test"]
    rest = goods[goods["split"] != "test"]
    moved = _more_test_goods(rest, len(test_goods), min_test_goods, rng)
    test_goods, rest = pd.concat([test_goods, rest.loc[moved]]), rest.drop(moved)
    if rest.empty:
        raise DefectGanError(f"grade {new_grade!r} has no good images outside the test split to train on")
    val_goods = rest[rest["split"] == "val"]
    if val_goods.empty:
        val_goods = rest[_take(rest, val_fraction, rng)]
    train_goods = rest.drop(val_goods.index)
    other_defects = others[others["label"] == "defect"]
    donors = _shots(other_defects[other_defects["split"] == "train"], donor_shots, rng)
    if donors.empty:
        raise DefectGanError(f"no training defects in grades other than {new_grade!r} to use as donors")
    val_defects = other_defects[other_defects["split"] == "val"]
    test = pd.concat([test_goods, mine[mine["label"] == "defect"]])
    if (test["label"] == "defect").sum() == 0 or (test["label"] == "good").sum() == 0:
        raise DefectGanError(f"grade {new_grade!r} needs good test images and real defects to test on")
    return NewGradeSplit(train_goods, pd.concat([val_goods, val_defects]), test, donors)


def arm_manifest(split: NewGradeSplit, arm: str) -> pd.DataFrame:
    """The manifest one arm trains and tests with: ``split`` column rewritten to train/val/test."""
    if arm not in ARMS:
        raise DefectGanError(f"unknown arm {arm!r}; known: {list(ARMS)}")
    train = pd.concat([split.train_goods, split.donors]) if arm == "none" else split.train_goods
    parts = [train.assign(split="train"), split.val.assign(split="val"), split.test.assign(split="test")]
    return pd.concat(parts, ignore_index=True)
