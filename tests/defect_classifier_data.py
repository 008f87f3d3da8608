"""Shared data and a once-per-session trained model for the DefectClassifier / DefectAugmented tests.

The data is a tiny procedural steel world (64 px, grades ``pickled`` and ``hot_rolled``); the
classifier trains on ``pickled`` good images with CutPaste defects taken from ``hot_rolled``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

GRADE, DONOR_GRADE = "pickled", "hot_rolled"


def steel_world(root: Path, good_per_grade: int = 20, per_class: int = 2, seed: int = 0) -> Path:
    """Render a 64 px steel world with two grades under ``root`` (skips if already there)."""
    from anomalib_defectgan.data import make_synthetic_steel

    if not (root / "manifest.csv").exists():
        make_synthetic_steel(root, size=64, per_class=per_class, good_per_grade=good_per_grade, seed=seed,
                             grades=[GRADE, DONOR_GRADE], progress=False)
    return root


def grade_folder(world: Path, batch_size: int = 4, **kwargs: Any):
    """anomalib ``Folder`` over the ``pickled`` grade (all defect classes, masks), no workers."""
    from anomalib_defectgan.benchmark.classifier import grade_datamodule

    return grade_datamodule(world, GRADE, batch_size=batch_size, **kwargs)


def cut_paste(world: Path, seed: int = 0):
    """CutPaste generator over the donor grade's real defects, always applied."""
    from anomalib_defectgan.generators import CutPasteGenerator

    return CutPasteGenerator(world / DONOR_GRADE / "test", probability=1.0, seed=seed)


@dataclass
class Trained:
    """A DefectClassifier fitted 2 epochs, with its datamodule and checkpoint."""

    model: Any
    datamodule: Any
    ckpt: Path
    world: Path


_TRAINED: list[Trained] = []  # test modules import the fixture separately; train only once per session


@pytest.fixture(scope="session")
def trained_classifier(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """Fit a 64 px resnet18 DefectClassifier for 2 epochs (26 steps of 4 images) through anomalib's Engine."""
    if _TRAINED:
        return _TRAINED[0]
    from anomalib.engine import Engine

    from anomalib_defectgan.data import DefectAugmented
    from anomalib_defectgan.models.defect_classifier import DefectClassifier

    work = tmp_path_factory.mktemp("trained_classifier")
    world = steel_world(work / "steel", good_per_grade=80)
    torch.manual_seed(0)
    datamodule = DefectAugmented(grade_folder(world, batch_size=4, val_split_mode="none"), cut_paste(world),
                                 synthetic_ratio=0.5, synthetic_val=True, synthetic_test=True, seed=0)
    model = DefectClassifier(image_size=64, lr=3e-3, visualizer=False)
    engine = Engine(max_epochs=2, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                    enable_model_summary=False, default_root_dir=str(work / "results"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        engine.fit(model, datamodule=datamodule)
    ckpt = Path(engine.trainer.checkpoint_callback.best_model_path or engine.trainer.checkpoint_callback.last_model_path)
    _TRAINED.append(Trained(model.eval(), datamodule, ckpt, world))
    return _TRAINED[0]
