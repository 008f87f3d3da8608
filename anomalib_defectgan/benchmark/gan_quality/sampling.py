"""gan-quality inputs and samples: which rows play which part, and the generators painting the same donors onto the same canvases."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from anomalib_defectgan.benchmark.gan_quality.metrics import MIN_REFERENCE, mask_tightness
from anomalib_defectgan.data.crops import crop_window, fit_to_crop
from anomalib_defectgan.data.image_contract import image_channels
from anomalib_defectgan.data.image_io import read_image
from anomalib_defectgan.data.manifest import write_manifest
from anomalib_defectgan.errors import DefectGanError

ARMS = ("defectgan", "cutpaste", "nsa")


@dataclass
class Plan:
    """Which manifest rows play which part.

    Attributes:
        train: Rows the evaluator learns from.
        val: Rows of its reference accuracy (``val`` split, or carved from ``train``).
        reference: Real defects (``val``/``test``) the Frechet distance compares against.
        donors: Real training defects the generators paint (classes the generator knows).
        canvas_rows: Per canvas grade, the good rows to paint on.
        notes: Fallbacks taken, for the report.
    """

    train: pd.DataFrame
    val: pd.DataFrame
    reference: pd.DataFrame
    donors: pd.DataFrame
    canvas_rows: dict[str, pd.DataFrame]
    notes: list[str] = field(default_factory=list)


def load_checked_generator(path: str | Path) -> Any:
    """Load an exported generator, with a one-line error for a missing folder."""
    from anomalib_defectgan.models.defect_gan.inference import CONFIG_NAME, WEIGHTS_NAME, load_generator

    path = Path(path)
    if not path.exists():
        raise DefectGanError(f"{path}: generator folder not found (expected {WEIGHTS_NAME} + {CONFIG_NAME} "
                             "written by 'defectgan fit' or 'defectgan export-weights')")
    return load_generator(path)


def check_channels(generator_path: str | Path, manifest: str | Path, gan_channels: int, frame: pd.DataFrame) -> None:
    """Raise when the generator's channel count does not match the manifest's images."""
    channels, example = image_channels(frame["image_path"].tolist())
    if channels != gan_channels:
        kind = "colour (3 channels)" if channels == 3 else "greyscale (1 channel)"
        config = Path(generator_path) / "generator.json" if Path(generator_path).is_dir() else Path(generator_path)
        raise DefectGanError(f"{config}: the generator works on {gan_channels}-channel images but the images of "
                             f"{manifest} are {kind} (e.g. {example}); use a generator trained on this kind of image")


def _carve(train: pd.DataFrame, val: pd.DataFrame, fraction: float, rng: np.random.Generator) -> pd.Series:
    """Train rows moved to validation: a share of each (class, grade) group that has no val rows."""
    moved = pd.Series(False, index=train.index)
    present = set(zip(val["defect_class"], val["grade"], strict=True))
    for key, group in train.groupby(["defect_class", "grade"]):
        if key in present or len(group) < 2:
            continue
        count = min(len(group) - 1, max(1, round(fraction * len(group))))
        moved[rng.choice(group.index.to_numpy(), count, replace=False)] = True
    return moved


def plan_rows(frame: pd.DataFrame, manifest: str | Path, gan_classes: Sequence[str], new_grade: str | None,
              seed: int = 0, val_fraction: float = 0.2) -> Plan:
    """Split the manifest into the evaluator's data, the real reference, donors and canvases.

    Raises:
        DefectGanError: No defects with masks, unknown new grade, no donors or canvases, or too
            few real val/test defects for the anchors.
    """
    grades = sorted(set(frame["grade"]))
    if new_grade is not None and new_grade not in grades:
        raise DefectGanError(f"{manifest}: new grade {new_grade!r} is not in the manifest; grades: {grades}")
    is_defect = frame["label"] == "defect"
    has_mask = frame["mask_path"] != ""
    if "mask_kind" in frame.columns:
        has_mask &= frame["mask_kind"] != "none"
    if not (is_defect & has_mask).any():
        raise DefectGanError(f"{manifest}: no defect rows with a mask; the evaluator and the generators need real "
                             f"labelled defects ({int(is_defect.sum())} defect rows, none with a mask_path)")
    usable = frame[~is_defect | has_mask]
    notes = []
    if (is_defect & ~has_mask).any():
        notes.append(f"{int((is_defect & ~has_mask).sum())} defect rows without a mask left out")
    rng = np.random.default_rng([seed, 23])
    train, val = usable[usable["split"] == "train"], usable[usable["split"] == "val"]
    moved = _carve(train, val, val_fraction, rng)
    if moved.any():
        notes.append(f"{int(moved.sum())} train rows held out for the evaluator's validation "
                     "(groups without val rows)")
    v_train, v_val = train[~moved], pd.concat([val, train[moved]])
    defects = usable[usable["label"] == "defect"]
    reference = defects[defects["split"].isin(["val", "test"])]
    if new_grade is not None:
        reference = reference[reference["grade"] == new_grade]
    where = f" of grade {new_grade!r}" if new_grade else ""
    if len(reference) < MIN_REFERENCE:
        raise DefectGanError(f"{manifest}: {len(reference)} real defects with masks in the val/test splits{where}; "
                             f"the Frechet anchors need at least {MIN_REFERENCE}")
    known = [c for c in sorted(set(defects["defect_class"])) if c in gan_classes]
    if not known:
        raise DefectGanError(f"{manifest}: none of its defect classes {sorted(set(defects['defect_class']))} is known "
                             f"to the generator ({list(gan_classes[1:])})")
    unknown = sorted(set(defects["defect_class"]) - set(known))
    if unknown:
        notes.append(f"classes unknown to the generator not used as donors: {unknown}")
    donors = defects[(defects["split"] == "train") & defects["defect_class"].isin(known)]
    if new_grade is not None:
        donors = donors[donors["grade"] != new_grade]
    if donors.empty:
        raise DefectGanError(f"{manifest}: no training defects of classes {known}"
                             + (f" outside grade {new_grade!r}" if new_grade else "") + " to use as donors")
    goods = usable[usable["label"] == "good"]
    canvas_rows = {}
    for grade in [new_grade] if new_grade else grades:
        mine = goods[goods["grade"] == grade]
        if mine.empty:
            continue
        trained = mine[mine["split"] == "train"]
        canvas_rows[grade] = trained if len(trained) else mine
    if not canvas_rows:
        raise DefectGanError(f"{manifest}: no good images{where} to paint defects on")
    return Plan(v_train, v_val, reference, donors, canvas_rows, notes)


@dataclass
class Generated:
    """Samples of one generator: evaluator-sized crops, targets and mask tightness.

    Attributes:
        crops: ``[N, C, crop, crop]`` crops centred on a mask pixel.
        classes: Donor class names.
        grades: Canvas grade names.
        iou: ``[N]`` mask IoU.
        leak: ``[N]`` change energy outside the mask.
        empty: How many masks had no pixel above 0.5.
    """

    crops: list[Tensor] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    grades: list[str] = field(default_factory=list)
    iou: list[float] = field(default_factory=list)
    leak: list[float] = field(default_factory=list)
    empty: int = 0

    def add(self, output: Tensor, canvas: Tensor, mask: Tensor, fallback: tuple[int, int], crop: int,
            defect_class: str, grade: str, rng: np.random.Generator) -> None:
        """Record one ``[C, H, W]`` output: tightness, and a crop centred on a random mask pixel."""
        iou, leak = mask_tightness(output[None], canvas[None], mask[None])
        self.iou.append(float(iou[0]))
        self.leak.append(float(leak[0]))
        ys, xs = np.nonzero((mask[0] > 0.5).numpy())
        if len(ys):
            pick = rng.integers(len(ys))
            centre = (int(ys[pick]), int(xs[pick]))
        else:
            self.empty += 1
            centre = fallback
        top, left = crop_window(tuple(output.shape[-2:]), crop, centre)
        self.crops.append(output[:, top:top + crop, left:left + crop].clamp(0, 1))
        self.classes.append(defect_class)
        self.grades.append(grade)


class CanvasStore:
    """Good images as float tensors ``[C, H, W]`` (upscaled to at least the crop), read once."""

    def __init__(self, channels: int, crop: int) -> None:
        self.channels, self.crop = channels, crop
        self.cache: dict[str, Tensor] = {}

    def __call__(self, path: str) -> Tensor:
        """The image of ``path``."""
        if path not in self.cache:
            image = read_image(path, self.channels)
            image, _ = fit_to_crop(image, np.zeros(image.shape[:2], bool), self.crop)
            self.cache[path] = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1).float() / 255.0
        return self.cache[path]


def canvas_schedule(plan: Plan, num: int, rng: np.random.Generator) -> list[tuple[str, str]]:
    """``num`` (grade, image path) canvases: grades in turn, an image of the grade at random."""
    grades = list(plan.canvas_rows)
    schedule = []
    for i in range(num):
        grade = grades[i % len(grades)]
        paths = plan.canvas_rows[grade]["image_path"].tolist()
        schedule.append((grade, paths[rng.integers(len(paths))]))
    return schedule


def generate(generator: str | Path, plan: Plan, num: int, crop: int, batch_size: int, seed: int, workdir: Path,
             channels: int, settings: dict[str, Any] | None = None) -> tuple[dict[str, Generated], list[str]]:
    """Paint ``num`` defects with each generator as it ships, on the same canvases.

    ``settings``: :class:`DefectTransferGenerator` keywords for the GAN (``window``,
    ``change_scale``, ``composite_mode``, ``critic_redraws``: :mod:`~anomalib_defectgan.utils.transfer_options`).

    For each canvas CutPaste draws a donor (uniform class, then uniform donor, from the training
    defects of the other grades where there are any); ``DefectTransferGenerator`` (the GAN, with
    ``settings``: what ``defectgan generate`` and ``DefectAugmented`` paint with them) then paints
    that same donor onto the same canvas (:meth:`DefectTransferGenerator.paint_donors`), and the
    NSA-style Poisson copy-paste draws its own donor the same way.

    Returns:
        ``({"defectgan": ..., "cutpaste": ..., "nsa": ...}, notes)``.
    """
    from anomalib_defectgan.generators.defect_bank import DefectBank
    from anomalib_defectgan.generators.factory import build_generator

    rng = np.random.default_rng([seed, 37])
    donor_manifest = write_manifest(plan.donors, workdir / "donors" / "manifest.csv")
    donor_grades = sorted(set(plan.donors["grade"]))
    canvases = CanvasStore(channels, crop)
    results = {arm: Generated() for arm in ARMS}
    notes = []
    schedule = canvas_schedule(plan, num, rng)
    for g, grade in enumerate(plan.canvas_rows):
        others = [d for d in donor_grades if d != grade]
        if not others:
            others = donor_grades
            notes.append(f"canvases of {grade!r} get donors of their own grade (no other grade has donors)")
        bank = DefectBank(donor_manifest, grades=others)
        painters = {kind: build_generator(kind, bank, seed=seed * 1000 + g) for kind in ("cutpaste", "nsa")}
        transfer = build_generator("defectgan", bank, generator, seed=seed * 1000 + g,
                                   transfer={"grade": grade, "cache_dir": workdir / "codes", **(settings or {})})
        index_of = {donor.path: i for i, donor in enumerate(bank.donors)}
        mine = [path for canvas_grade, path in schedule if canvas_grade == grade]
        for start in range(0, len(mine), batch_size):
            drawn = []
            for path in mine[start:start + batch_size]:
                canvas = canvases(path)
                for arm, painter in painters.items():
                    image, mask = painter(canvas)
                    info = painter.last_info[0]
                    if info is None:
                        continue
                    centre = (canvas.shape[-2] // 2, canvas.shape[-1] // 2)
                    results[arm].add(image, canvas, mask, centre, crop, info["defect_class"], grade, rng)
                    if arm == "cutpaste":
                        drawn.append((canvas, index_of[info["donor_path"]], info["defect_class"]))
            for canvas, index, name in drawn:  # canvases differ in size: one call each
                image, mask = transfer.paint_donors(canvas, [index])
                info = transfer.last_info[0]
                centre = ((info["top"] + info["window"] // 2, info["left"] + info["window"] // 2) if info is not None
                          else (canvas.shape[-2] // 2, canvas.shape[-1] // 2))
                results["defectgan"].add(image, canvas, mask, centre, crop, name, grade, rng)
    return results, notes


def write_figure(generator: str | Path, plan: Plan, crop: int, channels: int, per_class: int, seed: int,
                 path: Path, workdir: Path, settings: dict[str, Any] | None = None) -> Path:
    """``per_class`` transfers of each donor class onto the first canvas grade, as a PNG grid
    (:mod:`~anomalib_defectgan.benchmark.transfer_figure`), painted with the GAN ``settings`` of
    :func:`generate` except ``critic_redraws`` (the grid shows the first draw)."""
    from anomalib_defectgan.benchmark.transfer_figure import transfer_grid, transfer_rows
    from anomalib_defectgan.generators.defect_bank import DefectBank
    from anomalib_defectgan.generators.factory import build_generator

    grade, canvas_rows = next(iter(plan.canvas_rows.items()))
    donor_manifest = write_manifest(plan.donors, workdir / "figure_donors" / "manifest.csv")
    others = [g for g in sorted(set(plan.donors["grade"])) if g != grade] or sorted(set(plan.donors["grade"]))
    bank = DefectBank(donor_manifest, grades=others)
    painter = build_generator("defectgan", bank, generator, seed=seed,
                              transfer={**{k: v for k, v in (settings or {}).items() if k != "critic_redraws"},
                                        "grade": grade, "placement": "window", "edge_margin": 0,
                                        "cache_dir": workdir / "codes"})
    rng = np.random.default_rng([seed, 43])
    classes = [donor.defect_class for donor in bank.donors]
    donors = [int(i) for name in sorted(set(classes))
              for i in rng.permutation([k for k, c in enumerate(classes) if c == name])[:per_class]]
    canvases = CanvasStore(channels, crop)
    paths = canvas_rows["image_path"].to_numpy()[rng.integers(len(canvas_rows), size=len(donors))]
    images = [canvases(p) for p in paths]
    side = min(min(image.shape[-2:]) for image in images)
    batch = torch.stack([image[:, :side, :side] for image in images])
    return transfer_grid(transfer_rows(painter, batch, donors), path, title=f"transfers onto {grade}")


