"""The ``defectgan`` dispatcher."""

from __future__ import annotations

import subprocess
import sys

from anomalib_defectgan.cli import COMMANDS, main


def test_help_lists_every_command(capsys) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


def test_unknown_command_exits_2_and_says_so(capsys) -> None:
    assert main(["paint"]) == 2
    assert "unknown command 'paint'" in capsys.readouterr().err


def test_console_script_runs_in_a_subprocess() -> None:
    done = subprocess.run([sys.executable, "-m", "anomalib_defectgan.cli", "benchmark", "nope"],
                          check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "unknown benchmark 'nope'" in done.stderr and "Traceback" not in done.stderr
