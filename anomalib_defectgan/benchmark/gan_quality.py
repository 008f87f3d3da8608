"""``defectgan benchmark gan-quality``: judge generated defects with an independent evaluator.

No ImageNet weights can be downloaded here, so the judge is trained in the same run: a small CNN
(:mod:`~anomalib_defectgan.benchmark.evaluator`) learns defect class and grade from REAL crops of
the manifest's ``train`` split only. Then the generator and, as a reference, CutPaste paint the
same real donor defects onto the same good canvases, and we report:

* the evaluator's accuracy (class, grade) on real held-out crops: the ceiling;
* its class accuracy on generated crops (target: the donor's class) and grade accuracy (target:
  the canvas' grade): does a transfer keep the defect type and take the canvas' texture?
* the Frechet distance, in the evaluator's feature space, between generated crops and REAL
  defect crops of the ``val``/``test`` splits, with anchors computed in the same run: real vs
  real (disjoint halves of the real defects) and CutPaste vs real. Sample sizes are matched: each
  repeat splits the real defects into halves A and B and compares |A| generated crops with B,
  exactly as A is compared with B;
* mask tightness: IoU between the generator's mask (> 0.5) and the pixels that changed
  (mean over channels of ``|output - canvas| > tau``), and the leak: the share of the changed
  pixels' energy (squared change) that lies outside the mask.

What is judged is what ships: the GAN paints through ``DefectTransferGenerator`` with its
default settings (the code that ``defectgan generate``, ``DefectAugmented`` and the new-grade
benchmark paint with), CutPaste and the NSA-style Poisson copy-paste through
``CutPasteGenerator``, with the settings of the new-grade benchmark's arms.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from anomalib_defectgan.benchmark.evaluator import CropSampler, Evaluator, train_evaluator
from anomalib_defectgan.benchmark.results_table import json_safe
from anomalib_defectgan.data.crops import crop_window, fit_to_crop
from anomalib_defectgan.data.image_contract import image_channels
from anomalib_defectgan.data.image_io import read_image
from anomalib_defectgan.data.manifest import read_manifest, vocabularies, write_manifest
from anomalib_defectgan.errors import DefectGanError
from anomalib_defectgan.utils.atomic import atomic_write_text
from anomalib_defectgan.utils.transfer_options import add_transfer_options

ARMS = ("defectgan", "cutpaste", "nsa")
MIN_REFERENCE = 4


# ----------------------------------------------------------------------------------------- metrics


def frechet_distance(a: np.ndarray, b: np.ndarray, eps: float = 1e-6) -> float:
    """Frechet distance between Gaussians fitted to two feature sets.

    ``||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))``, with ``eps`` added to both
    covariance diagonals so that small samples (fewer rows than dimensions) stay well defined.
    The matrix square root is taken as ``(S_a^(1/2) S_b S_a^(1/2))^(1/2)`` (same trace, symmetric),
    with symmetric eigen-decompositions, so no complex values appear.

    Args:
        a: ``[n_a, d]`` features, ``n_a >= 2``.
        b: ``[n_b, d]`` features, ``n_b >= 2``.
        eps: Diagonal regulariser.

    Returns:
        The distance (>= 0 up to rounding).
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sets must be [n, d] with the same d, got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"need at least 2 samples per set, got {len(a)} and {len(b)}")
    eye = np.eye(a.shape[1])
    cov_a = np.cov(a, rowvar=False).reshape(eye.shape) + eps * eye
    cov_b = np.cov(b, rowvar=False).reshape(eye.shape) + eps * eye
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
    middle = root_a @ cov_b @ root_a
    cross = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum()
    diff = a.mean(0) - b.mean(0)
    return float(max(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * cross, 0.0))


def matched_frechet(reference: np.ndarray, generated: dict[str, np.ndarray], repeats: int = 20,
                    seed: int = 0) -> dict[str, dict[str, float]]:
    """Frechet distances with matched sample sizes, anchored by real vs real.

    Each repeat splits ``reference`` at random into halves A and B and computes FD(A, B) and, for
    every generated set, FD(G, B) with G a random subset of ``|A|`` generated rows. Small samples
    bias the distance upwards; matching the sizes gives every row the same bias.

    Args:
        reference: ``[n, d]`` features of real defects (``n >= 4``).
        generated: Name -> ``[m, d]`` features (``m >= n // 2``; smaller sets are used whole).
        repeats: Random splits.
        seed: Seed of the splits and subsets.

    Returns:
        ``{"real_vs_real": {...}, name: {...}}``, each with ``mean``, ``std`` and ``half`` (|A|).
    """
    if len(reference) < MIN_REFERENCE:
        raise ValueError(f"need at least {MIN_REFERENCE} reference rows, got {len(reference)}")
    rng = np.random.default_rng([seed, 31])
    half = len(reference) // 2
    values: dict[str, list[float]] = {"real_vs_real": [], **{name: [] for name in generated}}
    for _ in range(repeats):
        order = rng.permutation(len(reference))
        part_a, part_b = reference[order[:half]], reference[order[half:]]
        values["real_vs_real"].append(frechet_distance(part_a, part_b))
        for name, feats in generated.items():
            pick = rng.permutation(len(feats))[:half]
            values[name].append(frechet_distance(feats[pick], part_b) if len(pick) >= 2 else float("nan"))
    return {name: {"mean": float(np.mean(v)), "std": float(np.std(v)), "half": half} for name, v in values.items()}


def mask_tightness(output: Tensor, canvas: Tensor, mask: Tensor, tau: float = 0.05,
                   threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Per-image IoU of mask vs changed pixels, and the share of change energy outside the mask.

    A pixel changed when the mean over channels of ``|output - canvas|`` exceeds ``tau``; its
    energy is the squared change summed over channels. The mask is ``mask > threshold``.

    Args:
        output: ``[B, C, H, W]`` generated images.
        canvas: ``[B, C, H, W]`` the images they were painted on.
        mask: ``[B, 1, H, W]`` the generator's (soft or binary) masks.
        tau: Change threshold (images in [0, 1]).
        threshold: Mask threshold.

    Returns:
        ``(iou [B], leak [B])``; IoU is NaN where neither mask nor change has a pixel, leak is NaN
        where nothing changed.
    """
    diff = (output.double() - canvas.double())
    changed = diff.abs().mean(dim=1) > tau
    inside = mask[:, 0] > threshold
    energy = (diff ** 2).sum(dim=1) * changed
    inter = (changed & inside).flatten(1).sum(1).double()
    union = (changed | inside).flatten(1).sum(1).double()
    total = energy.flatten(1).sum(1)
    outside = (energy * ~inside).flatten(1).sum(1)
    iou = torch.where(union > 0, inter / union.clamp_min(1), torch.full_like(union, math.nan))
    leak = torch.where(total > 0, outside / total.clamp_min(1e-30), torch.full_like(total, math.nan))
    return iou.numpy(), leak.numpy()


# ----------------------------------------------------------------------------------------- inputs


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


# ----------------------------------------------------------------------------------------- generation


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
             channels: int, critic_redraws: int = 0, change_scale: float = 1.0,
             window: int | None = None) -> tuple[dict[str, Generated], list[str]]:
    """Paint ``num`` defects with each generator as it ships, on the same canvases.

    For each canvas CutPaste draws a donor (uniform class, then uniform donor, from the training
    defects of the other grades where there are any); ``DefectTransferGenerator`` (the GAN, with
    its default settings: what ``defectgan generate`` and ``DefectAugmented`` paint) then paints
    that same donor onto the same canvas (:meth:`DefectTransferGenerator.paint_donors`), and the
    NSA-style Poisson copy-paste draws its own donor the same way.

    Returns:
        ``({"defectgan": ..., "cutpaste": ..., "nsa": ...}, notes)``.
    """
    from anomalib_defectgan.generators import CutPasteGenerator, DefectTransferGenerator
    from anomalib_defectgan.generators.cut_paste import NSA_SETTINGS
    from anomalib_defectgan.generators.defect_bank import DefectBank

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
        painters = {
            "cutpaste": CutPasteGenerator(bank, probability=1.0, seed=seed * 1000 + g),
            "nsa": CutPasteGenerator(bank, probability=1.0, seed=seed * 1000 + g, **NSA_SETTINGS),
        }
        transfer = DefectTransferGenerator(generator, bank, probability=1.0, seed=seed * 1000 + g, grade=grade,
                                           cache_dir=workdir / "codes", critic_redraws=critic_redraws,
                                           change_scale=change_scale, window=window)
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
                 path: Path, workdir: Path, change_scale: float = 1.0, window: int | None = None) -> Path:
    """``per_class`` transfers of each donor class onto the first canvas grade, as a PNG grid
    (:mod:`~anomalib_defectgan.benchmark.transfer_figure`)."""
    from anomalib_defectgan.benchmark.transfer_figure import transfer_grid, transfer_rows
    from anomalib_defectgan.generators import DefectTransferGenerator
    from anomalib_defectgan.generators.defect_bank import DefectBank

    grade, canvas_rows = next(iter(plan.canvas_rows.items()))
    donor_manifest = write_manifest(plan.donors, workdir / "figure_donors" / "manifest.csv")
    others = [g for g in sorted(set(plan.donors["grade"])) if g != grade] or sorted(set(plan.donors["grade"]))
    bank = DefectBank(donor_manifest, grades=others)
    painter = DefectTransferGenerator(generator, bank, probability=1.0, seed=seed, grade=grade, edge_margin=0,
                                      cache_dir=workdir / "codes", change_scale=change_scale, window=window)
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


# ----------------------------------------------------------------------------------------- report


def score_generated(evaluator: Evaluator, samples: Generated, batch_size: int) -> tuple[dict[str, Any], np.ndarray]:
    """Evaluator accuracies and mask tightness of one generator; also returns its features."""
    crops = torch.stack(samples.crops) if samples.crops else torch.zeros(0, evaluator.channels, evaluator.crop,
                                                                         evaluator.crop)
    found = evaluator.judge(crops, batch_size)
    classes = np.array([evaluator.classes.index(c) for c in samples.classes], dtype=int)
    grades = np.array([evaluator.grades.index(g) for g in samples.grades], dtype=int)
    hits = found.classes == classes
    per_class = {name: float(hits[classes == i].mean()) for i, name in enumerate(evaluator.classes)
                 if (classes == i).any()}
    iou, leak = np.array(samples.iou, float), np.array(samples.leak, float)
    return {
        "samples": len(classes),
        "class_accuracy": float(hits.mean()) if len(hits) else math.nan,
        "grade_accuracy": float((found.grades == grades).mean()) if len(grades) else math.nan,
        "predicted_good": float((found.classes == 0).mean()) if len(hits) else math.nan,
        "class_accuracy_per_class": per_class,
        "mask_iou": float(np.nanmean(iou)) if np.isfinite(iou).any() else math.nan,
        "leak": float(np.nanmean(leak)) if np.isfinite(leak).any() else math.nan,
        "empty_masks": samples.empty,
    }, found.features


def _cell(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def format_report(results: dict[str, Any]) -> str:
    """Markdown table of a results dictionary (see :func:`run`)."""
    fd = results["frechet"]

    def frechet(name: str) -> str:
        entry = fd[name]
        ratio = f" (x{_cell(entry['ratio_to_real'], 2)} real)" if "ratio_to_real" in entry else ""
        return f"{_cell(entry['mean'], 2)} +- {_cell(entry['std'], 2)}{ratio}"

    real = results["evaluator"]
    lines = ["| images | n | class acc | grade acc | Frechet to real (V features) | mask IoU | leak |",
             "| --- | --- | --- | --- | --- | --- | --- |",
             (f"| real val crops (ceiling; Frechet: real half vs real half) | {real['val_crops']} | "
              f"{_cell(real['class_accuracy'])} | {_cell(real['grade_accuracy'])} | {frechet('real_vs_real')} "
              "| n/a | n/a |")]
    for arm in ARMS:
        row = results["generated"][arm]
        lines.append(f"| {arm} | {row['samples']} | {_cell(row['class_accuracy'])} | {_cell(row['grade_accuracy'])} | "
                     f"{frechet(arm)} | {_cell(row['mask_iou'])} | {_cell(row['leak'])} |")
    lines += ["", (f"Frechet: mean +- std over {fd['repeats']} random halves of {fd['reference_defects']} real "
                   f"val/test defects ({fd['real_vs_real']['half']} per half; each generator is compared with the "
                   "same halves using as many generated crops).")]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole benchmark; returns the results dictionary (also printed, and saved with ``--json``)."""
    started = time.perf_counter()
    gan = load_checked_generator(args.generator)
    frame = read_manifest(args.manifest)
    check_channels(args.generator, args.manifest, gan.channels, frame)
    crop = int(args.crop or gan.crop_size)
    if crop % 8 or crop < 16:
        raise DefectGanError(f"--crop must be a multiple of 8 and at least 16, got {crop}")
    plan = plan_rows(frame, args.manifest, gan.classes, args.new_grade, seed=args.seed)
    classes, grades = vocabularies(frame)
    print(f"evaluator: {len(plan.train)} train rows, {len(plan.val)} val rows, crop {crop}, "
          f"{args.evaluator_steps} steps", flush=True)
    evaluator = train_evaluator(plan.train, classes, grades, crop, gan.channels, steps=args.evaluator_steps,
                                batch_size=args.batch_size, seed=args.seed)
    rng = np.random.default_rng([args.seed, 41])
    val_sampler = CropSampler(plan.val, classes, grades, crop, gan.channels)
    val_crops = val_sampler.crops(np.repeat(np.arange(len(val_sampler)), args.val_crops), rng)
    class_acc, grade_acc = evaluator.accuracy(val_crops, args.batch_size)
    ref_sampler = CropSampler(plan.reference, classes, grades, crop, gan.channels)
    reference = evaluator.judge(ref_sampler.crops(range(len(ref_sampler)), rng).images, args.batch_size).features
    print(f"generating {args.num} samples per generator", flush=True)
    generation_started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gan-quality-") as workdir:
        samples, gen_notes = generate(args.generator, plan, args.num, crop, args.batch_size, args.seed,
                                      Path(workdir), gan.channels, args.critic_redraws, args.change_scale, args.window)
        if args.figure:
            write_figure(args.generator, plan, crop, gan.channels, args.figure_per_class, args.seed,
                         Path(args.figure), Path(workdir), args.change_scale, args.window)
    generation_seconds = time.perf_counter() - generation_started
    scores, features = {}, {}
    for arm in ARMS:
        scores[arm], features[arm] = score_generated(evaluator, samples[arm], args.batch_size)
    frechet = matched_frechet(reference, features, repeats=args.repeats, seed=args.seed)
    anchor = frechet["real_vs_real"]["mean"]
    for arm in ARMS:
        frechet[arm]["ratio_to_real"] = frechet[arm]["mean"] / anchor if anchor > 0 else math.nan
    return {
        "benchmark": "gan-quality",
        "argv": list(getattr(args, "argv", []) or []),
        "generator": str(Path(args.generator).resolve()),
        "manifest": str(Path(args.manifest).resolve()),
        "new_grade": args.new_grade,
        "canvas_grades": list(plan.canvas_rows),
        "crop": crop,
        "num": args.num,
        "critic_redraws": args.critic_redraws,
        "change_scale": args.change_scale,
        "window": args.window,
        "seed": args.seed,
        "classes": classes,
        "grades": grades,
        "evaluator": {"steps": args.evaluator_steps, "batch_size": args.batch_size, "train_rows": len(plan.train),
                      "val_rows": len(plan.val), "val_crops": len(val_crops), "class_accuracy": class_acc,
                      "grade_accuracy": grade_acc, "seconds": evaluator.seconds},
        "frechet": {"reference_defects": len(reference), "repeats": args.repeats, **frechet},
        "generated": scores,
        "donors": len(plan.donors),
        "notes": plan.notes + gen_notes,
        "generation_seconds": generation_seconds,
        "seconds": time.perf_counter() - started,
    }


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="defectgan benchmark gan-quality", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", required=True, help="exported generator folder (generator.safetensors + .json)")
    parser.add_argument("--manifest", required=True, help="manifest of REAL labelled images (train/val/test splits)")
    parser.add_argument("--new-grade", help="canvases: this grade's good images; donors: the other grades' defects "
                                            "(default: canvases of every grade, donors of another grade)")
    parser.add_argument("--num", type=int, default=256, help="generated samples per generator (default: %(default)s)")
    parser.add_argument("--crop", type=int, help="crop side (default: the generator's crop size)")
    parser.add_argument("--evaluator-steps", type=int, default=1000, help="evaluator training steps (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32, help="evaluator / generator batch (default: %(default)s)")
    parser.add_argument("--val-crops", type=int, default=4, help="crops per val row for the reference accuracy")
    parser.add_argument("--repeats", type=int, default=20, help="random halves for the Frechet distances")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the results here as JSON")
    add_transfer_options(parser, "defectgan", masks=False)
    parser.add_argument("--figure", help="also write a donor | canvas | composite | output | mask grid (PNG) here")
    parser.add_argument("--figure-per-class", type=int, default=2, help="rows per defect class in --figure")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    return parser


def main(argv: list[str]) -> int:
    """Entry point of ``defectgan benchmark gan-quality``."""
    args = build_parser().parse_args(argv)
    args.argv = list(argv)
    if args.num < 2:
        raise DefectGanError(f"--num must be at least 2, got {args.num}")
    if args.threads:
        torch.set_num_threads(args.threads)
    results = run(args)
    print(format_report(results))
    for note in results["notes"]:
        print(f"note: {note}")
    print(f"({results['seconds']:.0f} s: evaluator {results['evaluator']['seconds']:.0f} s, "
          f"generation {results['generation_seconds']:.0f} s)")
    if args.json:
        atomic_write_text(Path(args.json), json.dumps(json_safe(results), indent=2) + "\n")
        print(f"results written to {args.json}")
    return 0
