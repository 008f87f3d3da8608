"""Benchmark bookkeeping: per-run metrics, mean +- std tables, relative error reductions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

METRICS = ("error", "auroc", "ap", "pixel_auroc")


def _safe(metric, labels: np.ndarray, scores: np.ndarray) -> float:
    return float(metric(labels, scores)) if len(np.unique(labels)) == 2 else float("nan")


def score_run(labels: Sequence[int], scores: Sequence[float], predicted: Sequence[int],
              masks: np.ndarray | None = None, maps: np.ndarray | None = None,
              max_pixels: int = 2_000_000, seed: int = 0) -> dict[str, float]:
    """Metrics of one test run.

    Args:
        labels: Ground-truth image labels (1 = defect).
        scores: Image scores (higher = more defective).
        predicted: Predicted image labels.
        masks: Ground-truth masks ``[N, H, W]`` (optional).
        maps: Anomaly maps ``[N, H, W]`` aligned with ``masks`` (optional).
        max_pixels: Pixel AUROC is computed on a seeded random subset of at most this many pixels.
        seed: Seed of that subset.

    Returns:
        ``error`` (1 - accuracy), ``auroc``, ``ap`` and ``pixel_auroc`` (NaN without masks).
    """
    labels = np.asarray(labels).astype(int)
    scores = np.asarray(scores, dtype=np.float64)
    result = {
        "error": float(np.mean(np.asarray(predicted).astype(int) != labels)),
        "auroc": _safe(roc_auc_score, labels, scores),
        "ap": _safe(average_precision_score, labels, scores),
        "pixel_auroc": float("nan"),
    }
    if masks is not None and maps is not None:
        truth = np.asarray(masks).reshape(-1).astype(int)
        values = np.asarray(maps, dtype=np.float64).reshape(-1)
        if truth.size > max_pixels:
            pick = np.random.default_rng(seed).choice(truth.size, max_pixels, replace=False)
            truth, values = truth[pick], values[pick]
        result["pixel_auroc"] = _safe(roc_auc_score, truth, values)
    return result


def summarize(runs: pd.DataFrame, group: str = "arm") -> pd.DataFrame:
    """Mean, std and count of every metric per ``group`` (rows keep the order of first appearance)."""
    order = list(dict.fromkeys(runs[group]))
    stats = runs.groupby(group)[list(METRICS)].agg(["mean", "std", "count"])
    return stats.loc[order]


def relative_error_reduction(ours: float, baseline: float) -> float:
    """``(baseline - ours) / baseline``: 0.44 means 44 % fewer errors; NaN when the baseline is 0."""
    return (baseline - ours) / baseline if baseline > 0 else float("nan")


def format_table(summary: pd.DataFrame) -> str:
    """Markdown table, one row per arm: ``mean +- std`` of every metric."""

    def cell(mean: float, std: float) -> str:
        if math.isnan(mean):
            return "n/a"
        return f"{mean:.3f}" if math.isnan(std) else f"{mean:.3f} +- {std:.3f}"

    header = "| arm | runs | " + " | ".join(METRICS) + " |"
    lines = [header, "|" + " --- |" * (len(METRICS) + 2)]
    for arm, row in summary.iterrows():
        count = int(row[(METRICS[0], "count")])
        cells = [cell(row[(m, "mean")], row[(m, "std")]) for m in METRICS]
        lines.append(f"| {arm} | {count} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def reductions(summary: pd.DataFrame, ours: str, plain: str, baselines: Sequence[str]) -> dict[str, float]:
    """Relative error reduction of ``ours`` vs the ``plain`` arm and vs the best of ``baselines``."""
    error = summary[("error", "mean")]
    present = [b for b in baselines if b in error.index]
    best = min(present, key=lambda b: error[b]) if present else None
    return {
        f"vs_{plain}": relative_error_reduction(error[ours], error[plain]),
        "vs_best_baseline": relative_error_reduction(error[ours], error[best]) if best else float("nan"),
        "best_baseline": best or "",
    }


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, inf) replaced by None, so JSON stays standard."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
