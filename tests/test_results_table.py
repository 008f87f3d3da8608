"""The benchmark's table code on a tiny fixture."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from anomalib_defectgan.benchmark.results_table import (
    format_table,
    reductions,
    relative_error_reduction,
    score_run,
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
