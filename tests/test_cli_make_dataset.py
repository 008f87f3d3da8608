"""``defectgan make-dataset``: subprocess smoke test, refusal of existing folders, no partial output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from anomalib_defectgan.commands.make_dataset import main
from anomalib_defectgan.data import synthetic_steel
from anomalib_defectgan.data.manifest import read_manifest
from anomalib_defectgan.errors import OutputExistsError

TINY = ["--size", "48", "--per-class", "1", "--good-per-grade", "2", "--grades", "pickled", "cold_rolled",
        "--classes", "scratches", "crazing", "--no-progress"]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "anomalib_defectgan.cli", "make-dataset", *args], cwd=cwd,
                          capture_output=True, check=False, text=True, timeout=120)


def test_cli_smoke_writes_a_readable_dataset_with_a_progress_bar(tmp_path: Path) -> None:
    result = _cli(*[a for a in TINY if a != "--no-progress"], "--out", "ds", "--seed", "4", "--paired",
                  "--channels", "3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "wrote 12 images (8 defect, 4 good) of 2 grades" in result.stdout
    assert "steel world" in result.stderr and "img" in result.stderr  # tqdm writes to stderr
    frame = read_manifest(tmp_path / "ds")
    assert sorted(frame["grade"].unique()) == ["cold_rolled", "pickled"]
    assert (frame.loc[frame["label"] == "defect", "pair_id"] != "").all()
    assert (tmp_path / "ds/pickled/ground_truth/crazing/cold_rolled_000_mask.png").is_file()


def test_cli_unknown_grade_is_one_clear_line_and_writes_nothing(tmp_path: Path) -> None:
    result = _cli("--out", "ds", "--grades", "pickled", "stainless", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "unknown grade 'stainless'" in lines[0]
    assert "hot_rolled, pickled, cold_rolled, galvanized" in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_defaults_are_the_documented_ones() -> None:
    from anomalib_defectgan.commands.make_dataset import build_parser

    args = build_parser().parse_args([])
    assert (args.out, args.size, args.channels, args.paired, args.overwrite) == (
        "datasets/synthetic_steel", 256, 1, False, False)


def test_existing_folder_is_refused_then_replaced_with_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="not empty.*--overwrite"):
        main(["--out", str(out), *TINY])
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no staging folder left behind

    assert main(["--out", str(out), *TINY, "--overwrite"]) == 0
    assert not (out / "keep.txt").exists()
    assert len(read_manifest(out)) == 2 * (2 + 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_an_empty_existing_folder_is_used(tmp_path: Path) -> None:
    (tmp_path / "ds").mkdir()
    assert main(["--out", "ds", *TINY]) == 0
    assert (tmp_path / "ds" / "manifest.csv").is_file()


def test_overwrite_never_deletes_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("precious")
    with pytest.raises(OutputExistsError, match="refusing"):
        main(["--out", ".", *TINY, "--overwrite"])
    assert (tmp_path / "notes.txt").read_text() == "precious"


def test_interrupted_run_leaves_no_partial_dataset_and_keeps_the_old_one(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "ds"
    out.mkdir()
    (out / "old.txt").write_text("previous dataset")
    real = synthetic_steel.render_defect
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) % 3 == 0:  # the third defect of every run
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(synthetic_steel, "render_defect", interrupted)
    with pytest.raises(KeyboardInterrupt):
        main(["--out", str(out), *TINY, "--overwrite"])
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
    with pytest.raises(KeyboardInterrupt):
        main(["--out", str(tmp_path / "fresh"), *TINY])
    assert not (tmp_path / "fresh").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_benchmark_prints_images_per_second(capsys: pytest.CaptureFixture[str]) -> None:
    from anomalib_defectgan.benchmark.steel_world import main as benchmark

    assert benchmark(["--size", "32", "--count", "2"]) == 0
    text = capsys.readouterr().out
    assert "good images" in text and "defect images" in text and "img/s" in text
