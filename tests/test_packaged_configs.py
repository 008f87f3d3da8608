"""Shipped configs are found by name in a checkout and travel inside the wheel."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from anomalib_defectgan.cli import main as cli
from anomalib_defectgan.errors import DefectGanError
from anomalib_defectgan.utils.packaged_configs import config_file, resolve_config

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted(str(path.relative_to(REPO / "configs")) for path in (REPO / "configs").glob("*/*.yaml"))


def test_every_repository_config_resolves_by_name() -> None:
    assert "defect_gan/cpu.yaml" in SHIPPED and "classifier/new_grade.yaml" in SHIPPED
    for name in SHIPPED:
        assert config_file(name).read_bytes() == (REPO / "configs" / name).read_bytes()


def test_a_file_wins_over_a_shipped_name(tmp_path: Path) -> None:
    own = tmp_path / "defect_gan" / "cpu.yaml"
    own.parent.mkdir()
    own.write_text("trainer: {}\n")
    assert resolve_config(own) == own


def test_unknown_name_lists_what_is_shipped() -> None:
    with pytest.raises(DefectGanError, match=r"defect_gan/nope\.yaml.*shipped: .*defect_gan/tiny\.yaml"):
        resolve_config("defect_gan/nope.yaml")


def test_fit_takes_a_shipped_config_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["fit", "-c", "defect_gan/tiny.yaml", "--data.manifest", "m.csv", "--print_config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["data"]["init_args"]["manifest"] == "m.csv"


def test_fit_with_an_unknown_config_name_is_one_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["fit", "-c", "defect_gan/huge.yaml"]) == 2
    assert "defect_gan/huge.yaml" in capsys.readouterr().err


def test_the_wheel_carries_the_configs(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(REPO),
                    "-w", str(tmp_path)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("anomalib_defectgan-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"anomalib_defectgan/configs/{name}" for name in SHIPPED} <= names
    assert "anomalib_defectgan/cli.py" in names and "anomalib_defectgan/models/defect_gan/torch_model.py" in names


def test_configs_command_lists_prints_paths_and_copies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["configs"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in SHIPPED) and "DefectGan TINY" in listing
    assert cli(["configs", "--path", "defect_gan/tiny.yaml"]) == 0
    assert Path(capsys.readouterr().out.strip()).read_bytes() == (REPO / "configs" / "defect_gan" / "tiny.yaml").read_bytes()

    out = tmp_path / "cfg"
    assert cli(["configs", "--copy", str(out)]) == 0
    assert sorted(str(p.relative_to(out)) for p in out.glob("*/*.yaml")) == SHIPPED
    assert all((out / name).read_bytes() == (REPO / "configs" / name).read_bytes() for name in SHIPPED)
    capsys.readouterr()

    (out / "defect_gan" / "cpu.yaml").write_text("trainer: {max_steps: 7}\n")
    assert cli(["configs", "--copy", str(out), "defect_gan/cpu.yaml"]) == 2
    assert "cpu.yaml exists and differs" in capsys.readouterr().err
    assert (out / "defect_gan" / "cpu.yaml").read_text() == "trainer: {max_steps: 7}\n"
    assert cli(["configs", "--copy", str(out), "--overwrite", "defect_gan/cpu.yaml"]) == 0
    assert (out / "defect_gan" / "cpu.yaml").read_bytes() == (REPO / "configs" / "defect_gan" / "cpu.yaml").read_bytes()
    assert cli(["configs", "--path"]) == 2
    assert cli(["configs", "nope.yaml"]) == 2
    assert "no shipped config 'nope.yaml'" in capsys.readouterr().err
