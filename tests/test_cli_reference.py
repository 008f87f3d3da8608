"""docs/cli.md documents every command, every benchmark and every option their --help prints."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from anomalib_defectgan.cli import COMMANDS
from anomalib_defectgan.cli import main as cli
from anomalib_defectgan.commands.benchmark import BENCHMARKS

REFERENCE = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
ARGPARSE_COMMANDS = [[name] for name in COMMANDS if name not in {"fit", "benchmark"}]
ARGPARSE_COMMANDS += [["benchmark", name] for name in BENCHMARKS]


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_:
        cli([*argv, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def test_every_command_and_benchmark_has_a_section() -> None:
    for name in COMMANDS:
        assert f"## `defectgan {name}`" in REFERENCE, name
    for name in BENCHMARKS:
        assert f"### `benchmark {name}`" in REFERENCE, name


@pytest.mark.parametrize("argv", ARGPARSE_COMMANDS, ids=" ".join)
def test_every_option_is_documented(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    options = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", _help(argv, capsys))) - {"--help"}
    assert options, "the help lists no options: the pattern is wrong"
    missing = sorted(option for option in options if f"`{option}`" not in REFERENCE and f"[{option}" not in REFERENCE)
    assert not missing, f"defectgan {' '.join(argv)}: options missing from docs/cli.md: {missing}"
