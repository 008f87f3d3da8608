"""gan-quality metrics: Frechet distances with matched sample sizes, mask tightness, evaluator scores."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from anomalib_defectgan.benchmark.evaluator import Evaluator

if TYPE_CHECKING:
    from anomalib_defectgan.benchmark.gan_quality.sampling import Generated

MIN_REFERENCE = 4
"""Fewest real reference defects the Frechet anchors are computed from."""


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


