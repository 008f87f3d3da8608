"""The shipped DefectGan configs parse, and `defectgan benchmark gan` measures the TINY config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from anomalib_defectgan.benchmark import gan as bench
from anomalib_defectgan.cli import main as cli
from anomalib_defectgan.errors import DefectGanError

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "defect_gan"


@pytest.mark.parametrize("name", ["tiny", "cpu", "steel_128", "steel_256"])
def test_config_parses_with_the_fit_cli(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["fit", "-c", str(CONFIGS / f"{name}.yaml"), "--data.manifest", "m.csv", "--print_config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"].endswith("DefectGan")
    assert printed["data"]["init_args"]["manifest"] == "m.csv"


def test_gpu_configs_are_bf16_with_8_pairs_and_4_goods() -> None:
    for name in ("steel_128", "steel_256"):
        config = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
        assert config["trainer"]["precision"] == "bf16-mixed"
        assert config["data"]["init_args"]["batch_size"] == 8 and config["data"]["init_args"]["goods_per_batch"] == 4


def test_benchmark_times_the_tiny_config(tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    try:
        assert bench.main(["--skip-real", "--tiny-steps", "1", "--threads", "1", "--json", str(tmp_path / "b.json")]) == 0
    finally:
        torch.set_num_threads(threads)
    result = json.loads((tmp_path / "b.json").read_text())["tiny_cpu"]
    assert result["seconds_per_iteration"] > 0 and result["pairs_per_batch"] == 4
    assert 0.4 < result["generator_params_M"] < 0.7, "TINY is about 0.5 M parameters"
    with pytest.raises(DefectGanError, match="not found"):
        bench.read_config(tmp_path / "missing.yaml")
