"""The benchmark's table code on a tiny fixture."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from anomalib_defectgan.benchmark.results_table import (
    best_arm,
    class_aurocs,
    format_class_table,
    format_paired,
    format_table,
    paired_differences,
    reductions,
    relative_error_reduction,
    score_run,
    small_test_warning,
    summarize,
)


def test_score_run_on_a_hand_checked_case() -> None:
    labels, scores, predicted = [0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9], [0, 1, 0, 1]
    masks = np.zeros((4, 2, 2), bool)
    masks[2, 0, 0] = masks[3, 1, 1] = True
    maps = np.where(masks, 0.9, 0.1)
    result = score_run(labels, scores, predicted, masks, maps)
    assert result["error"] == 0.5
    assert result["auroc"] == pytest.approx(0.75)
    assert result["ap"] == pytest.approx((1.0 + 2 / 3) / 2)
    assert result["pixel_auroc"] == pytest.approx(1.0)
    assert math.isnan(score_run([1, 1], [0.2, 0.3], [1, 1])["auroc"]), "one class: AUROC undefined"


def test_summary_reductions_and_table() -> None:
    runs = pd.DataFrame([
        {"arm": "none", "seed": s, "error": e, "auroc": 0.8, "ap": 0.7, "pixel_auroc": float("nan")}
        for s, e in enumerate([0.20, 0.30])
    ] + [
        {"arm": "cutpaste", "seed": s, "error": e, "auroc": 0.9, "ap": 0.8, "pixel_auroc": 0.9}
        for s, e in enumerate([0.10, 0.10])
    ] + [
        {"arm": "defectgan", "seed": s, "error": e, "auroc": 0.95, "ap": 0.9, "pixel_auroc": 0.95}
        for s, e in enumerate([0.05, 0.05])
    ])
    summary = summarize(runs)
    assert list(summary.index) == ["none", "cutpaste", "defectgan"]
    assert summary.loc["none", ("error", "mean")] == pytest.approx(0.25)
    assert summary.loc["none", ("error", "std")] == pytest.approx(np.std([0.2, 0.3], ddof=1))
    found = reductions(summary, ours="defectgan", plain="none", baselines=["perlin", "cutpaste"])
    assert found["vs_none"] == pytest.approx(0.8)
    assert found["vs_best_baseline"] == pytest.approx(0.5) and found["best_baseline"] == "cutpaste"
    table = format_table(summary)
    assert "| none | 2 | 0.250 +- 0.071 |" in table
    assert "| n/a |" in table.splitlines()[2], "missing pixel AUROC shows as n/a"
    assert math.isnan(relative_error_reduction(0.1, 0.0))


def test_json_safe_replaces_non_finite_floats() -> None:
    from anomalib_defectgan.benchmark.results_table import json_safe

    assert json_safe({"a": [1.0, float("nan")], "b": {"c": float("inf"), "d": "x"}}) == {
        "a": [1.0, None], "b": {"c": None, "d": "x"}}


def _runs(arms: dict[str, list[tuple[float, float, float]]]) -> pd.DataFrame:
    """Runs frame from ``{arm: [(error, auroc, ap) per seed]}``."""
    return pd.DataFrame([{"arm": arm, "seed": seed, "error": e, "auroc": u, "ap": a, "pixel_auroc": float("nan")}
                         for arm, values in arms.items() for seed, (e, u, a) in enumerate(values)])


def test_best_arm_is_the_highest_auroc_then_ap_and_nan_ranks_last() -> None:
    summary = summarize(_runs({"perlin": [(0.05, 0.70, 0.90)], "cutpaste": [(0.30, 0.80, 0.60)],
                               "nsa": [(0.20, 0.80, 0.70)], "none": [(0.01, float("nan"), float("nan"))]}))
    assert best_arm(summary, ["perlin", "cutpaste", "nsa"]) == "nsa", "AUROC tie: higher AP wins, error is ignored"
    assert best_arm(summary, ["perlin", "none"]) == "perlin", "a NaN AUROC never wins"
    assert best_arm(summary, ["absent"]) is None
    found = reductions(summary, ours="cutpaste", plain="none", baselines=["perlin", "nsa"])
    assert found["best_baseline"] == "nsa" and found["vs_best_baseline"] == pytest.approx(-0.5)


def test_paired_differences_pair_seeds_against_the_best_auroc_baseline() -> None:
    runs = _runs({
        "perlin": [(0.05, 0.70, 0.60), (0.05, 0.72, 0.62)],      # lowest error, but not the best AUROC
        "cutpaste": [(0.20, 0.90, 0.80), (0.30, 0.80, 0.70)],    # best mean AUROC (0.85)
        "defectgan": [(0.10, 0.95, 0.90), (0.20, 0.90, 0.60), (0.00, 1.00, 1.00)],  # seed 2 has no partner
    })
    paired = paired_differences(runs)
    assert paired["baseline"] == "cutpaste" and paired["ours"] == "defectgan" and paired["seeds"] == [0, 1]
    assert paired["auroc"]["per_seed"] == pytest.approx([0.05, 0.10])
    assert paired["error"]["per_seed"] == pytest.approx([-0.10, -0.10])
    assert paired["ap"]["per_seed"] == pytest.approx([0.10, -0.10])
    assert paired["auroc"]["mean"] == pytest.approx(0.075)
    assert paired["auroc"]["std"] == pytest.approx(np.std([0.05, 0.10], ddof=1))
    assert paired["ap"]["mean"] == pytest.approx(0.0)
    table = format_paired(paired)
    assert "| metric | seed 0 | seed 1 | mean +- std |" in table
    assert "| auroc | +0.050 | +0.100 | +0.075 +- 0.035 |" in table
    assert "| error | -0.100 | -0.100 | -0.100 +- 0.000 |" in table

    one = paired_differences(runs[runs["seed"] == 0])
    assert one["seeds"] == [0] and math.isnan(one["auroc"]["std"]), "one seed: no std"
    assert "| auroc | +0.050 | +0.050 |" in format_paired(one)
    assert paired_differences(runs[runs["arm"] != "defectgan"]) == {}
    assert paired_differences(runs[runs["arm"] == "defectgan"]) == {}
    assert format_paired({}) == ""


def test_paired_differences_skip_nan_seeds() -> None:
    runs = _runs({"cutpaste": [(0.2, 0.8, 0.7), (0.2, float("nan"), float("nan"))],
                  "defectgan": [(0.1, 0.9, 0.8), (0.1, float("nan"), float("nan"))]})
    paired = paired_differences(runs)
    assert paired["auroc"]["mean"] == pytest.approx(0.1) and math.isnan(paired["auroc"]["std"])
    assert math.isnan(paired["auroc"]["per_seed"][1])
    assert "| auroc | +0.100 | n/a | +0.100 |" in format_paired(paired)


def test_small_test_warning_below_the_minimum_only() -> None:
    warning = small_test_warning(goods=8, defects=72, minimum=100)
    assert warning.startswith("Warning: only 8 good test images and 72 test defects (fewer than 100)")
    assert "1/80 = 0.013" in warning and "1/8 = 0.125" in warning
    assert "error differences below ~0.06 and AUROC differences below ~0.18 mean nothing here" in warning
    assert small_test_warning(goods=100, defects=102, minimum=100) is None
    only_defects = small_test_warning(goods=150, defects=50, minimum=100)
    assert "only 50 test defects (" in only_defects and "good test images" not in only_defects
    assert "1/50 = 0.020" in only_defects
    assert "undefined" in small_test_warning(goods=0, defects=5, minimum=100)


def test_class_aurocs_rank_each_class_against_all_goods() -> None:
    labels = [0, 0, 1, 1, 1, 1]
    scores = [0.2, 0.4, 0.9, 0.8, 0.3, 0.1]
    classes = ["good", "good", "scratch", "scratch", "inclusion", "inclusion"]
    assert class_aurocs(labels, scores, classes) == {"inclusion": 0.25, "scratch": 1.0}
    assert math.isnan(class_aurocs([1, 1], [0.5, 0.6], ["a", "a"])["a"]), "no goods: undefined, not 0 or 1"
    runs = pd.DataFrame([{"arm": "cutpaste", "seed": 0, "scratch": 0.9, "inclusion": 0.7},
                         {"arm": "cutpaste", "seed": 1, "scratch": 0.7, "inclusion": 0.5},
                         {"arm": "defectgan", "seed": 0, "scratch": 0.8}])
    text = format_class_table(runs, {"scratch": 120, "inclusion": 40}, goods=100, minimum=100)
    assert "(40 inclusion, 120 scratch test defects, each class against the 100 good test images)" in text
    assert "| cutpaste | 0.600 +- 0.141 | 0.800 +- 0.141 |" in text
    assert "| defectgan | n/a | 0.800 |" in text
    assert text.endswith("too few for these columns to rank arms: inclusion (40).")
