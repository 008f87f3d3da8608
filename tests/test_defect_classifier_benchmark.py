"""`defectgan benchmark classifier`: table arithmetic and bad input (the full run is documented, not tested)."""

from __future__ import annotations

from pathlib import Path

import pytest

from anomalib_defectgan.benchmark.classifier import format_table, grade_datamodule, main
from anomalib_defectgan.cli import main as cli_main
from anomalib_defectgan.errors import DefectGanError


def test_table_gives_speedups_over_eager_per_batch_size() -> None:
    results = {"latency_ms": {"eager/b1": 300.0, "eager/b16": 2000.0, "fp32/b1": 60.0, "fp32/b16": 1000.0},
               "auroc": {"eager": 0.9, "fp32": 0.875}, "label_agreement": {"eager": 1.0, "fp32": 0.98}}
    table = format_table(results, [1, 16], ["fp32"]).splitlines()
    assert table[0].startswith("| variant | batch 1: ms (x eager) | batch 16: ms (x eager) |")
    assert table[2] == "| PyTorch eager | 300.0 (1.00x) | 2000.0 (1.00x) | 0.9000 | 100.0% |"
    assert table[3] == "| OpenVINO FP32 | 60.0 (5.00x) | 1000.0 (2.00x) | 0.8750 | 98.0% |"


def test_missing_checkpoint_and_bad_dataset_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(DefectGanError, match="missing.ckpt: checkpoint not found"):
        main(["--ckpt", str(tmp_path / "missing.ckpt")])
    assert cli_main(["benchmark", "classifier", "--ckpt", str(tmp_path / "missing.ckpt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    with pytest.raises(DefectGanError, match="not a grade of a `defectgan make-dataset` folder"):
        grade_datamodule(tmp_path, "pickled")
