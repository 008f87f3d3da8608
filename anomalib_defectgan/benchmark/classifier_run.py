"""Train and test one DefectClassifier through anomalib's Engine; collect per-image results."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import seed_everything

from anomalib_defectgan.benchmark.results_table import score_run

logger = logging.getLogger(__name__)


@dataclass
class ClassifierSettings:
    """What every arm of a benchmark trains with (plain data)."""

    backbone: str = "resnet18"
    image_size: int = 128
    max_steps: int = 200
    batch_size: int = 16
    synthetic_ratio: float = 0.5
    synthetic_val: bool = True
    lr: float = 1e-3
    accelerator: str = "auto"
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ArmResult:
    """Per-image test outputs and metrics of one trained classifier."""

    metrics: dict[str, float]
    labels: np.ndarray
    scores: np.ndarray
    predicted: np.ndarray
    image_paths: list[str]
    threshold: float | None = None
    model: Any = None
    engine: Any = None
    datamodule: Any = None


def _collect(predictions: list[Any], max_maps: int = 512) -> dict[str, Any]:
    labels, scores, predicted, paths, masks, maps = [], [], [], [], [], []
    for batch in predictions:
        labels.append(batch.gt_label.int().cpu())
        scores.append(batch.pred_score.float().flatten().cpu())
        predicted.append(batch.pred_label.int().flatten().cpu())
        paths += list(batch.image_path)
        if batch.gt_mask is not None and batch.anomaly_map is not None and sum(len(m) for m in maps) < max_maps:
            masks.append(batch.gt_mask.bool().reshape(len(batch.gt_label), *batch.gt_mask.shape[-2:]).cpu())
            maps.append(batch.anomaly_map.float().reshape(len(batch.gt_label), *batch.anomaly_map.shape[-2:]).cpu())
    return {
        "labels": torch.cat(labels).numpy(),
        "scores": torch.cat(scores).numpy(),
        "predicted": torch.cat(predicted).numpy(),
        "paths": paths,
        "masks": torch.cat(masks).numpy() if masks else None,
        "maps": torch.cat(maps).numpy() if maps else None,
    }


def train_and_test(manifest: str | Path, generator: Callable | None, settings: ClassifierSettings, seed: int,
                   work_dir: str | Path, name: str = "arm") -> ArmResult:
    """Train a DefectClassifier on a manifest's ``train`` rows (plus synthetic defects), test on ``test``.

    Args:
        manifest: Manifest whose ``split`` column says train/val/test (see ``arm_manifest``).
        generator: Synthetic-defect generator of the Perlin contract, or None for real data only.
        settings: Classifier and training settings.
        seed: Seed of everything.
        work_dir: anomalib's ``default_root_dir`` for this run.
        name: Dataset name shown by anomalib.
    """
    from anomalib.engine import Engine

    from anomalib_defectgan.data.augmented import DefectAugmented
    from anomalib_defectgan.data.manifest_datamodule import DefectManifest
    from anomalib_defectgan.models.defect_classifier import DefectClassifier, DefectPostProcessor

    seed_everything(seed, workers=True)
    datamodule = DefectManifest(str(manifest), name=name, train={"splits": ["train"]}, val={"splits": ["val"]},
                                test={"splits": ["test"]}, train_batch_size=settings.batch_size,
                                eval_batch_size=settings.batch_size, seed=seed)
    if generator is not None:
        datamodule = DefectAugmented(datamodule=datamodule, generator=generator,
                                     synthetic_ratio=settings.synthetic_ratio,
                                     synthetic_val=settings.synthetic_val, seed=seed)
    # Raw (unnormalised) scores: anomalib's min-max normalisation clamps scores outside the
    # validation range to 0 or 1, which would tie them and bias AUROC/AP. Thresholding stays on.
    model = DefectClassifier(backbone=settings.backbone, image_size=settings.image_size, lr=settings.lr,
                             post_processor=DefectPostProcessor(enable_normalization=False), visualizer=False,
                             **settings.extra)
    # A fixed number of optimizer steps, validated once at the end: arms whose training set is
    # only good images (a few batches per epoch) get as much training as the others.
    engine = Engine(default_root_dir=str(work_dir), max_steps=settings.max_steps, max_epochs=-1,
                    val_check_interval=settings.max_steps, check_val_every_n_epoch=None,
                    accelerator=settings.accelerator, devices=1, logger=False, enable_progress_bar=settings.progress,
                    enable_model_summary=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        engine.fit(model=model, datamodule=datamodule)
        predictions = engine.predict(model=model, dataloaders=datamodule.test_dataloader())
    found = _collect(predictions)
    metrics = score_run(found["labels"], found["scores"], found["predicted"], found["masks"], found["maps"], seed=seed)
    return ArmResult(metrics, found["labels"], found["scores"], found["predicted"], found["paths"],
                     threshold=float(model.post_processor.image_threshold), model=model, engine=engine,
                     datamodule=datamodule)
