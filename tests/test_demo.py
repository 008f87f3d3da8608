"""``defectgan demo`` end to end at test size (a few minutes on 2 CPU cores)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from anomalib_defectgan.cli import main


def _numbers(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _numbers(item)
    elif isinstance(value, list):
        for item in value:
            yield from _numbers(item)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield value


@pytest.mark.slow
def test_demo_smoke_writes_a_complete_report(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--profile", "smoke"]) == 0
    report = json.loads((out / "report.json").read_text())
    for name in ("report.md", "figures/samples.png", "figures/roc.png", "figures/errors.png",
                 "benchmark/results.md", "benchmark/runs.csv", "generated/manifest.csv"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    numbers = list(_numbers(report))
    assert len(numbers) > 20 and all(math.isfinite(n) for n in numbers)
    assert set(report["benchmark"]["summary"]) == {"none", "perlin", "cutpaste", "nsa", "defectgan"}
    assert report["openvino"]["max_abs_score_diff"] < 1e-3
    assert report["gan_iterations"] == 20 and report["gan_budget"]["max_steps"] == 20
    assert report["benchmark"]["paired_vs_best_baseline"]["baseline"] == report["benchmark"][
        "relative_error_reduction"]["best_baseline"]
    text = (out / "report.md").read_text()
    assert "| defectgan |" in text and "Paired differences defectgan - " in text
    assert "GAN: 20 iterations (budget 20; time cap none)." in text
    assert "Warning: only " in text and "mean nothing here" in text, "the smoke test split is tiny"
    assert any(line.startswith("Warning: only ") for line in report["warnings"])
