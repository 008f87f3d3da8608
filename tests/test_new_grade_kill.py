"""`defectgan benchmark new-grade` killed with SIGKILL keeps its finished runs and redoes the rest."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import write_blob_dataset


def _command(manifest: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "anomalib_defectgan.cli", "benchmark", "new-grade", "--dataset", "manifest",
            "--manifest", str(manifest), "--new-grade", "bright", "--arms", "none", "--seeds", "0", "1", "2",
            "--steps", "2", "--batch-size", "4", "--image-size", "32", "--min-test-goods", "2", "--out", str(out)]


def test_sigkill_keeps_finished_runs_and_a_rerun_does_the_rest(tmp_path: Path) -> None:
    manifest = write_blob_dataset(tmp_path / "d", size=32, per_class=3, goods=6)
    out = tmp_path / "bench"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(_command(manifest, out), cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not list(out.glob("runs/*/result.json")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    _, err = process.communicate()
    finished = {path: path.read_bytes() for path in out.glob("runs/*/result.json")}
    assert finished, f"no run finished before the kill (rc {process.returncode}): {err.decode()[-2000:]}"
    assert len(finished) < 3, "the kill came after the whole benchmark"
    assert not list(out.rglob("*.tmp*")), "a killed run leaves no temporary file"

    rerun = subprocess.run(_command(manifest, out), cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
                           timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert {path: path.read_bytes() for path in finished} == finished, "finished runs were not redone"
    results = json.loads((out / "results.json").read_text())
    assert sorted(path.parent.name for path in out.glob("runs/*/result.json")) == [
        "none_seed0", "none_seed1", "none_seed2"]
    assert "none" in results["summary"]
