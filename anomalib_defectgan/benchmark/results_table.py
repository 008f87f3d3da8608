"""Benchmark bookkeeping: per-run metrics, mean +- std tables, the best arm, paired differences."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

METRICS = ("error", "auroc", "ap", "pixel_auroc")
BASELINES = ("perlin", "cutpaste", "nsa")
PAIRED_METRICS = ("auroc", "ap", "error")


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


def best_arm(summary: pd.DataFrame, candidates: Sequence[str]) -> str | None:
    """The candidate with the highest mean AUROC (ties: higher mean AP); NaN ranks last.

    Threshold-free, so the choice does not depend on where anomalib put the threshold.

    Args:
        summary: :func:`summarize`'s table.
        candidates: Arms to choose from; those absent from ``summary`` are skipped.

    Returns:
        The best arm, or None when no candidate is present.
    """

    def rank(arm: str) -> tuple[float, float]:
        return tuple(-math.inf if math.isnan(value) else value
                     for value in (summary.loc[arm, ("auroc", "mean")], summary.loc[arm, ("ap", "mean")]))

    present = [arm for arm in candidates if arm in summary.index]
    return max(present, key=rank) if present else None


def reductions(summary: pd.DataFrame, ours: str, plain: str, baselines: Sequence[str]) -> dict[str, float]:
    """Relative error reduction of ``ours`` vs the ``plain`` arm and vs the :func:`best_arm` of ``baselines``."""
    error = summary[("error", "mean")]
    best = best_arm(summary, baselines)
    return {
        f"vs_{plain}": relative_error_reduction(error[ours], error[plain]),
        "vs_best_baseline": relative_error_reduction(error[ours], error[best]) if best else float("nan"),
        "best_baseline": best or "",
    }


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    mean = float(np.mean(finite)) if finite else float("nan")
    return mean, float(np.std(finite, ddof=1)) if len(finite) > 1 else float("nan")


def paired_differences(runs: pd.DataFrame, ours: str = "defectgan",
                       baselines: Sequence[str] = BASELINES) -> dict[str, Any]:
    """``ours - best baseline`` per seed, for every seed both arms ran.

    The baseline is the :func:`best_arm` of ``baselines``. Each difference compares two runs with
    the same classifier seed on the same test set. NaN differences (AUROC on a one-class test set)
    are left out of the mean and std. When ``ours`` ran with several GANs (a ``gan_seed`` column),
    each of its runs is paired with the baseline's run of the same classifier seed.

    Args:
        runs: One row per arm and seed (``arm``, ``seed``, optionally ``gan_seed``, and the metrics).
        ours: The arm under test.
        baselines: Arms to compare with.

    Returns:
        ``ours``, ``baseline``, ``seeds`` (and ``gan_seeds``, aligned with them, with several GANs)
        and, per metric of ``auroc``, ``ap``, ``error``:
        ``per_seed`` (in ``seeds`` order), ``mean`` and ``std`` (NaN with one seed). Positive AUROC
        and AP differences and negative error differences favour ``ours``. Empty when ``ours`` or
        every baseline is missing.
    """
    if ours not in set(runs["arm"]):
        return {}
    baseline = best_arm(summarize(runs), baselines)
    if baseline is None:
        return {}
    columns = ["seed", *PAIRED_METRICS]
    several = _gan_seeds(runs, ours)
    order = ["gan_seed", "seed"] if several else ["seed"]
    pairs = runs.loc[runs["arm"] == ours, [*order[:-1], *columns]].merge(
        runs.loc[runs["arm"] == baseline, columns], on="seed", suffixes=("_ours", "_base")).sort_values(order)
    result: dict[str, Any] = {"ours": ours, "baseline": baseline, "seeds": [int(s) for s in pairs["seed"]]}
    if several:
        result["gan_seeds"] = [int(g) for g in pairs["gan_seed"]]
    for metric in PAIRED_METRICS:
        per_seed = (pairs[f"{metric}_ours"] - pairs[f"{metric}_base"]).astype(float).tolist()
        mean, std = _mean_std(per_seed)
        result[metric] = {"per_seed": per_seed, "mean": mean, "std": std}
    return result


def format_paired(paired: dict[str, Any]) -> str:
    """Markdown table of :func:`paired_differences`: one row per metric, one column per seed."""
    if not paired:
        return ""

    def signed(value: float) -> str:
        return "n/a" if math.isnan(value) else f"{value:+.3f}"

    ours, baseline = paired["ours"], paired["baseline"]
    caption = (f"Paired differences {ours} - {baseline} per seed ({baseline}: the baseline with the highest mean "
               f"AUROC, ties AP); AUROC and AP: higher is better for {ours}, error: lower.")
    labels = ([f"GAN {g} seed {s}" for g, s in zip(paired["gan_seeds"], paired["seeds"], strict=True)]
              if "gan_seeds" in paired else [f"seed {s}" for s in paired["seeds"]])
    lines = [caption, "",
             "| metric | " + " | ".join(labels) + " | mean +- std |",
             "|" + " --- |" * (len(paired["seeds"]) + 2)]
    for metric in PAIRED_METRICS:
        row = paired[metric]
        spread = "" if math.isnan(row["std"]) else f" +- {row['std']:.3f}"
        cells = [signed(v) for v in row["per_seed"]] + [signed(row["mean"]) + spread]
        lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _gan_seeds(runs: pd.DataFrame, arm: str) -> list[int]:
    """The GAN seeds ``arm`` ran with (empty: one GAN, or no ``gan_seed`` column)."""
    if "gan_seed" not in runs:
        return []
    values = runs.loc[runs["arm"] == arm, "gan_seed"].dropna()
    return [int(g) for g in dict.fromkeys(values)]


def gan_training_spread(runs: pd.DataFrame, ours: str = "defectgan") -> dict[str, Any]:
    """How much the GAN's own training moves ``ours``: per-GAN means and their spread.

    Args:
        runs: One row per arm, classifier seed and (for ``ours``) GAN seed (``gan_seed``).
        ours: The arm that ran with several GANs.

    Returns:
        Empty unless ``ours`` ran with at least two GAN seeds. Otherwise ``per_gan`` (GAN seed ->
        runs and mean of every metric), and per metric of ``auroc``, ``ap``, ``error``:
        ``between_gans`` (std of the per-GAN means) and ``within_gan`` (the classifier seeds' std
        inside one GAN, pooled over GANs; NaN with one classifier seed).
    """
    seeds = _gan_seeds(runs, ours)
    if len(seeds) < 2:
        return {}
    stats = summarize(runs.loc[runs["arm"] == ours].astype({"gan_seed": int}), group="gan_seed")
    result: dict[str, Any] = {"per_gan": {int(g): {"runs": int(stats.loc[g, (METRICS[0], "count")]),
                                                   **{m: float(stats.loc[g, (m, "mean")]) for m in METRICS}}
                                          for g in stats.index}}
    for metric in PAIRED_METRICS:
        variances = stats[(metric, "std")].astype(float) ** 2
        result[metric] = {"between_gans": float(stats[(metric, "mean")].std(ddof=1)),
                          "within_gan": float(np.sqrt(variances.mean())) if variances.notna().any() else float("nan")}
    return result


def format_gan_spread(spread: dict[str, Any], ours: str = "defectgan") -> str:
    """Markdown table of :func:`gan_training_spread`: one row per GAN, then the two spreads."""
    if not spread:
        return ""

    def value(x: float) -> str:
        return "n/a" if math.isnan(x) else f"{x:.3f}"

    lines = [f"{ours} per GAN training (one GAN per seed, the classifier seeds averaged):", "",
             "| GAN seed | runs | " + " | ".join(METRICS) + " |", "|" + " --- |" * (len(METRICS) + 2)]
    for seed, row in spread["per_gan"].items():
        lines.append(f"| {seed} | {row['runs']} | " + " | ".join(value(row[m]) for m in METRICS) + " |")
    lines += ["", "Spread (std) " + "; ".join(
        f"{m}: {value(spread[m]['between_gans'])} between GAN trainings, {value(spread[m]['within_gan'])} "
        f"between classifier seeds of one GAN" for m in PAIRED_METRICS) + ". A difference between two GAN "
        "configs smaller than the spread between GAN trainings is not a ranking."]
    return "\n".join(lines)


def class_aurocs(labels: Sequence[int], scores: Sequence[float], classes: Sequence[str]) -> dict[str, float]:
    """AUROC of each defect class against all good test images (goods have label 0).

    Args:
        labels: Ground-truth image labels (1 = defect).
        scores: Image scores.
        classes: Defect class of each image (ignored for goods).

    Returns:
        ``{class: AUROC}`` for every defect class in the test set, sorted by name (NaN without goods).
    """
    labels = np.asarray(labels).astype(int)
    scores = np.asarray(scores, dtype=np.float64)
    classes = np.asarray(classes, dtype=object)
    result = {}
    for name in sorted(set(classes[labels == 1])):
        rows = (labels == 0) | ((classes == name) & (labels == 1))
        result[str(name)] = _safe(roc_auc_score, labels[rows], scores[rows])
    return result


def format_class_table(per_class: pd.DataFrame, counts: dict[str, int], goods: int, minimum: int) -> str:
    """Markdown table of per-class AUROC, mean +- std over seeds: one row per arm, one column per class.

    Args:
        per_class: One row per arm and seed (``arm``, ``seed``, one column per defect class).
        counts: Test defects of each class (the table's columns; a class no run scored is ``n/a``).
        goods: Good test images (every class is ranked against all of them).
        minimum: Fewest test defects a class needs for its AUROC to rank arms (a note names the others).
    """
    names = sorted(counts)
    lines = [f"Per-class AUROC, mean +- std over seeds ({', '.join(f'{counts[n]} {n}' for n in names)} test "
             f"defects, each class against the {goods} good test images):", "",
             "| arm | " + " | ".join(names) + " |", "|" + " --- |" * (len(names) + 1)]
    for arm, group in per_class.groupby("arm", sort=False):
        cells = []
        for name in names:
            mean, std = _mean_std(group[name].astype(float).tolist() if name in group else [])
            cells.append("n/a" if math.isnan(mean) else f"{mean:.3f}" + ("" if math.isnan(std) else f" +- {std:.3f}"))
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    few = [f"{n} ({counts[n]})" for n in names if counts[n] < minimum]
    if few:
        lines += ["", f"Fewer than {minimum} test defects, too few for these columns to rank arms: {', '.join(few)}."]
    return "\n".join(lines)


def small_test_warning(goods: int, defects: int, minimum: int) -> str | None:
    """A warning when the test split holds fewer than ``minimum`` good images or defects.

    The noise floors quoted are the largest standard error of a rate measured on ``n`` images,
    ``0.5 / sqrt(n)``: ``n`` is every test image for the error, the scarcer class for AUROC.

    Args:
        goods: Good test images.
        defects: Defective test images.
        minimum: Fewest images of each class a trustworthy test split holds.

    Returns:
        One line of text, or None when both classes reach ``minimum``.
    """
    short = [f"{count} {name}" for count, name in ((goods, "good test images"), (defects, "test defects"))
             if count < minimum]
    if not short:
        return None
    total, scarce = goods + defects, min(goods, defects)
    if scarce == 0:
        return f"Warning: only {' and '.join(short)} (fewer than {minimum}): AUROC and AP are undefined."
    outlier = "one good image scored above every defect" if goods <= defects else "one defect scored below every good image"
    return (f"Warning: only {' and '.join(short)} (fewer than {minimum}): one misclassified image moves error by "
            f"1/{total} = {1 / total:.3f} and {outlier} moves AUROC by 1/{scarce} = {1 / scarce:.3f}; error "
            f"differences below ~{0.5 / math.sqrt(total):.2f} and AUROC differences below "
            f"~{0.5 / math.sqrt(scarce):.2f} mean nothing here.")


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, inf) replaced by None, so JSON stays standard."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
