"""Plain progress lines for log files: runs left with a time estimate, stages with their time."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest

from anomalib_defectgan.benchmark import new_grade
from anomalib_defectgan.benchmark.classifier_run import ArmResult, ClassifierSettings
from anomalib_defectgan.benchmark.new_grade_protocol import new_grade_split
from anomalib_defectgan.cli import main as cli
from anomalib_defectgan.data.manifest import read_manifest
from anomalib_defectgan.utils import progress
from anomalib_defectgan.utils.progress import RunClock, StageClock, clock
from tests.helpers import write_blob_dataset
from tests.test_generators_support import make_bank, make_normals


def test_clock_formats_hours_minutes_seconds() -> None:
    assert clock(0) == "0:00:00" and clock(61.4) == "0:01:01" and clock(3725) == "1:02:05" and clock(-3) == "0:00:00"


def test_run_clock_estimates_from_trained_runs_only(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    runs = RunClock(4)
    assert runs.starting() == "run 1/4, 0:00:00 elapsed", "no estimate before a run was timed"
    runs.skipped()
    assert runs.left() == "3 of 4 runs left"
    now[0] += 60
    runs.finished(60.0)
    assert runs.starting() == "run 3/4, 0:01:00 elapsed, about 0:02:00 left"
    runs.finished(120.0)
    assert runs.left() == "1 of 4 runs left, about 0:01:30"
    runs.finished(30.0)
    assert runs.left() == "all 4 runs done"


def test_stage_clock_numbers_stages_with_elapsed_time(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [5.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    stages = StageClock(6)
    now[0] += 65
    assert stages.line("2+4", "GAN") == "[2+4/6 at 0:01:05] GAN" and stages.elapsed() == 65


def test_benchmark_prints_which_run_of_how_many_and_time_left(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    frame = read_manifest(write_blob_dataset(tmp_path / "d", size=32, per_class=4, goods=6))
    frame.loc[(frame["label"] == "good") & (frame.index % 3 == 0), "split"] = "test"
    grade = min(frame["grade"].unique())
    split = new_grade_split(frame, grade)

    def fake_train(manifest, generator, settings, seed, root, name):
        rows = len(split.test)
        labels = np.arange(rows) % 2
        return ArmResult({"error": 0.5, "auroc": 0.5, "ap": 0.5, "pixel_auroc": 0.5}, labels, labels * 0.5 + 0.25,
                         labels, [f"{i}.png" for i in range(rows)])

    monkeypatch.setattr(new_grade, "train_and_test", fake_train)
    run = {"split": split, "title": grade, "out": tmp_path / "bench", "arms": ["none", "cutpaste"], "seeds": [0, 1],
           "gan_config": "unused", "gan_steps": None,
           "settings": ClassifierSettings(max_steps=3, image_size=32, progress=False)}
    new_grade.run_benchmark(**run)
    lines = capsys.readouterr().out.splitlines()
    starts = [line for line in lines if re.match(r"\[\w+ seed \d\] run \d/4, \d:\d\d:\d\d elapsed", line)]
    assert [line.split("]")[0] + "]" for line in starts] == [
        "[none seed 0]", "[cutpaste seed 0]", "[none seed 1]", "[cutpaste seed 1]"]
    assert "about" not in starts[0] and all(", about " in line and line.endswith(" left") for line in starts[1:])
    done = [line for line in lines if " runs left" in line or "runs done" in line]
    assert len(done) == 4 and re.search(r"\(\d+ s; 3 of 4 runs left, about \d:\d\d:\d\d\)$", done[0]), done[0]
    assert done[-1].endswith("all 4 runs done)")
    new_grade.run_benchmark(**run)
    again = capsys.readouterr().out
    assert again.count("already done") == 4 and "run 1/4" not in again


def test_count_lines_write_about_twenty_lines_and_a_final_one(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    stream = io.StringIO()
    counter = progress.CountLines(200, "generate", "img", stream)
    for _ in range(200):
        now[0] += 0.5
        counter.update(1)
    counter.close()
    lines = stream.getvalue().splitlines()
    assert 18 <= len(lines) <= 21
    assert lines[0] == "generate 10/200 (5%) 2.0 img/s ETA 0:01:35"
    assert lines[-1] == "generate 200/200 (100%) 2.0 img/s done in 0:01:40"


def test_progress_bar_is_plain_lines_off_a_terminal_and_tqdm_on_one() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert isinstance(progress.progress_bar(5, "x", "img", stream=io.StringIO()), progress.CountLines)
    assert not isinstance(progress.progress_bar(5, "x", "img", stream=Terminal()), progress.CountLines)
    assert not isinstance(progress.progress_bar(5, "x", "img", disable=True, stream=io.StringIO()),
                          progress.CountLines)


def test_generate_writes_plain_progress_lines_to_a_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    normals, bank = make_normals(tmp_path / "normals", count=3, size=40), make_bank(tmp_path / "bank", per_class=2)
    assert cli(["generate", "--generator", "cutpaste", "--normal-dir", str(normals), "--defect-bank", str(bank),
                "--num", "40", "--out", str(tmp_path / "out"), "--batch-size", "4"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("generate ")]
    assert len(lines) >= 10 and "\r" not in "".join(lines)
    assert re.fullmatch(r"generate 40/40 \(100%\) [\d.]+ img/s done in \d:\d\d:\d\d", lines[-1]), lines[-1]
