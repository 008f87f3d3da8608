"""``defectgan benchmark generator`` runs end to end on tiny settings and reports every generator."""

from __future__ import annotations

import json
from pathlib import Path

from anomalib_defectgan.cli import main as cli
from tests.test_generators_support import make_bank, make_tiny_generator


def test_generator_benchmark_reports_all_generators(tmp_path: Path, capsys) -> None:
    bank = make_bank(tmp_path / "bank", per_class=1)
    checkpoint = make_tiny_generator(tmp_path / "gen")
    out = tmp_path / "bench.json"
    assert cli(["benchmark", "generator", "--size", "48", "--batch", "2", "--iters", "1", "--warmup", "0",
                "--checkpoint", str(checkpoint), "--defect-bank", str(bank), "--skip", "openvino",
                "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    names = ["PerlinAnomalyGenerator (anomalib)", "CutPasteGenerator", "DefectTransferGenerator torch"]
    assert list(result["img_per_wall_s"]) == names and all(name in printed for name in names)
    assert all(rate > 0 for rate in result["img_per_cpu_s"].values())
    assert result["ratio_to_perlin_wall"]["PerlinAnomalyGenerator (anomalib)"] == 1.0
    assert result["crop_size"] == 32 and result["bank_donors"] == 2
