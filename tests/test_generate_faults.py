"""``defectgan generate`` under faults: batch-size independence, refused resumes, SIGKILL, a full disk."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from anomalib_defectgan.cli import main as cli
from tests.test_generators_support import make_bank, make_normals, make_tiny_generator


@pytest.fixture
def inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    monkeypatch.setenv("ANOMALIB_DEFECTGAN_CACHE", str(tmp_path / "cache"))
    return make_normals(tmp_path / "normals", count=3, size=40), make_bank(tmp_path / "bank", per_class=2)


def _args(normals: Path, bank: Path, out: Path, num: int, batch: int, *extra: str,
          checkpoint: Path | None = None) -> list[str]:
    generator = ["--generator", "defectgan", "--checkpoint", str(checkpoint)] if checkpoint else ["--generator",
                                                                                                    "cutpaste"]
    return ["generate", *generator, "--normal-dir", str(normals), "--defect-bank", str(bank), "--num", str(num),
            "--out", str(out), "--batch-size", str(batch), "--no-progress", *extra]


def _reference(args: list[str], out: Path, ref: Path) -> None:
    """Run ``args`` uninterrupted into ``out`` and move it to ``ref``, so that ``out`` can be redone in place."""
    assert cli(args) == 0
    out.rename(ref)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _assert_same_tree(out: Path, ref: Path) -> None:
    got, want = _files(out), _files(ref)
    assert sorted(got) == sorted(want), "no stale, temporary or missing file"
    assert [name for name in want if got[name] != want[name]] == [], "every file equal byte for byte"


def _records(out: Path) -> int:
    return len(list((out / ".progress").glob("0*.json")))


def _kill_when(command: list[str], out: Path, records: int, delay: float) -> None:
    """Start ``command``, SIGKILL it ``delay`` s after ``out`` holds ``records`` finished items."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen([sys.executable, "-m", "anomalib_defectgan.cli", *command],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 120
    while process.poll() is None and _records(out) < records and time.monotonic() < deadline:
        time.sleep(0.002)
    time.sleep(delay)
    process.kill()
    _, err = process.communicate()
    assert process.returncode == -signal.SIGKILL, f"killed before it finished: rc {process.returncode} {err[-500:]}"


@pytest.mark.parametrize("generator", ["cutpaste", "nsa"])
def test_copy_paste_outputs_do_not_depend_on_batch_size(inputs: tuple[Path, Path], tmp_path: Path,
                                                        generator: str) -> None:
    normals, bank = inputs
    out = tmp_path / "out"
    for batch in (1, 3, 8):
        args = _args(normals, bank, out, 24, batch)
        args[args.index("cutpaste")] = generator
        _reference(args, out, tmp_path / f"batch{batch}")
    assert len(list((tmp_path / "batch1" / "defect").iterdir())) == 24
    _assert_same_tree(tmp_path / "batch3", tmp_path / "batch1")
    _assert_same_tree(tmp_path / "batch8", tmp_path / "batch1")


def test_defectgan_draws_do_not_depend_on_batch_size(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    """Donor, orientation, window and redraws are per item; pixels may differ in the GAN's last float bits."""
    normals, bank = inputs
    checkpoint = make_tiny_generator(tmp_path / "gen")
    out = tmp_path / "out"
    for batch in (1, 3, 8):
        _reference(_args(normals, bank, out, 12, batch, checkpoint=checkpoint), out, tmp_path / f"batch{batch}")
    records = {batch: {p.name: p.read_bytes() for p in (tmp_path / f"batch{batch}" / ".progress").glob("0*.json")}
               for batch in (1, 3, 8)}
    assert len(records[1]) == 12 and records[3] == records[1] and records[8] == records[1]
    assert json.loads((tmp_path / "batch3" / ".progress" / "run.json").read_text())["batch_size"] == 3


def test_paint_seeded_gives_an_image_the_same_draws_in_any_batch(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    from anomalib_defectgan.generators.cut_paste import CutPasteGenerator
    from anomalib_defectgan.generators.defect_transfer import DefectTransferGenerator

    _, bank = inputs
    images = torch.rand(8, 1, 40, 40, generator=torch.Generator().manual_seed(0))
    seeds = [11 * i + 5 for i in range(8)]
    paste = CutPasteGenerator(bank, probability=1.0, seed=3)
    transfer = DefectTransferGenerator(make_tiny_generator(tmp_path / "gen"), bank, probability=1.0, seed=3)
    for gen in (paste, transfer):
        state = gen.rng.get_state()
        whole, whole_mask = gen.paint_seeded(images, seeds)
        infos = list(gen.last_info)
        for size in (1, 3):
            for start in range(0, 8, size):
                part, part_mask = gen.paint_seeded(images[start:start + size], seeds[start:start + size])
                assert gen.last_info == infos[start:start + size], f"{type(gen).__name__}, batch {size}"
                if gen is paste:
                    assert torch.equal(part, whole[start:start + size])
                    assert torch.equal(part_mask, whole_mask[start:start + size])
        assert torch.equal(gen.rng.get_state(), state), "the shared generator is left alone"
    with pytest.raises(ValueError, match="one seed per image"):
        paste.paint_seeded(images, seeds[:3])


def test_resume_with_another_output_setting_is_refused_naming_it(inputs: tuple[Path, Path], tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    normals, bank = inputs
    paste, gan = tmp_path / "paste", tmp_path / "gan"
    checkpoint = make_tiny_generator(tmp_path / "gen")
    assert cli(_args(normals, bank, paste, 4, 4)) == 0
    assert cli(_args(normals, bank, gan, 4, 4, checkpoint=checkpoint)) == 0
    capsys.readouterr()
    before = _files(paste)
    assert cli(_args(normals, bank, paste, 4, 3)) == 0, "the batch size changes no CutPaste output"
    assert _files(paste) == before

    def refused(args: list[str], out: Path, change: str) -> None:
        snapshot = _files(out)
        assert cli(args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and change in err, err
        assert _files(out) == snapshot, "a refused resume changes nothing"

    refused(_args(normals, bank, paste, 4, 4, "--device", "cuda:1"), paste, 'different device: "cpu" before, '
                                                                           '"cuda:1" now')
    refused(_args(normals, bank, gan, 4, 3, checkpoint=checkpoint), gan, "different batch_size: 4 before, 3 now")
    refused(_args(normals, bank, gan, 4, 4, "--backend", "openvino", checkpoint=checkpoint), gan,
            'different backend: "torch" before, "openvino" now')
    with monkeypatch.context() as patch:
        patch.setattr(torch, "get_num_threads", lambda: 7)
        refused(_args(normals, bank, gan, 4, 4, checkpoint=checkpoint), gan, "different threads: 1 before, 7 now")
    run_file = paste / ".progress" / "run.json"
    old = json.loads(run_file.read_text())
    del old["seeding"]
    run_file.write_text(json.dumps(old))
    refused(_args(normals, bank, paste, 4, 4), paste, 'different seeding: unset before, "per-item" now')


def test_sigkill_five_times_then_resume_equals_an_uninterrupted_run(inputs: tuple[Path, Path],
                                                                    tmp_path: Path) -> None:
    normals, bank = inputs
    out, num = tmp_path / "out", 160
    _reference(_args(normals, bank, out, num, 4), out, tmp_path / "ref")
    rng = random.Random(2024)
    targets = sorted(rng.sample(range(1, num // 2), 5))  # half the items left: a fast machine cannot finish them
    for target, batch in zip(targets, (1, 3, 8, 5, 2), strict=True):
        _kill_when(_args(normals, bank, out, num, batch), out, max(target, _records(out) + 1), rng.uniform(0, 0.03))
        assert not (out / "manifest.csv").exists()
    assert 5 <= _records(out) < num
    assert cli(_args(normals, bank, out, num, 7)) == 0
    _assert_same_tree(out, tmp_path / "ref")


def test_defectgan_sigkill_then_resume_equals_an_uninterrupted_run(inputs: tuple[Path, Path],
                                                                   tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    normals, bank = inputs
    checkpoint = make_tiny_generator(tmp_path / "gen")
    out, num = tmp_path / "out", 24
    _reference(_args(normals, bank, out, num, 4, checkpoint=checkpoint), out, tmp_path / "ref")
    rng = random.Random(5)
    _kill_when(_args(normals, bank, out, num, 4, checkpoint=checkpoint), out, rng.randrange(2, 15),
               rng.uniform(0, 0.03))
    assert 2 <= _records(out) < num and not (out / "manifest.csv").exists()
    assert cli(_args(normals, bank, out, num, 8, checkpoint=checkpoint)) == 2
    assert "different batch_size: 4 before, 8 now" in capsys.readouterr().err
    assert cli(_args(normals, bank, out, num, 4, checkpoint=checkpoint)) == 0
    _assert_same_tree(out, tmp_path / "ref")


def test_defectgan_resume_repaints_the_batches_of_the_uninterrupted_run(inputs: tuple[Path, Path], tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The GAN's last float bits depend on its batch, so a resume must hand it the same batches."""
    from anomalib_defectgan.generators.defect_transfer import DefectTransferGenerator

    normals, bank = inputs
    checkpoint = make_tiny_generator(tmp_path / "gen")
    out, num = tmp_path / "out", 10
    calls: list[list[int]] = []
    paint = DefectTransferGenerator.paint_seeded

    def spy(self: DefectTransferGenerator, images: torch.Tensor, seeds: list[int]) -> Any:
        calls.append(list(seeds))
        return paint(self, images, seeds)

    monkeypatch.setattr(DefectTransferGenerator, "paint_seeded", spy)
    assert cli(_args(normals, bank, out, num, 4, checkpoint=checkpoint)) == 0
    batches, calls[:] = list(calls), []
    for name in ("00005_good_2", "00006_good_0", "00009_good_0"):  # a kill in the 2nd and 3rd batch
        (out / ".progress" / f"{name}.json").unlink()
    assert cli(_args(normals, bank, out, num, 4, checkpoint=checkpoint)) == 0
    assert calls == batches[1:]


def _full_disk_on(write: int, out: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Make the ``write``-th file write under ``out`` write half its data, then fail with ENOSPC."""
    writes: list[Path] = []

    def failing(original: Callable[..., Any]) -> Callable[..., Any]:
        def write_data(self: Path, data: Any, *args: Any, **kwargs: Any) -> Any:
            if self.is_relative_to(out):
                writes.append(self)
                if len(writes) == write:
                    original(self, data[:len(data) // 2], *args, **kwargs)
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
            return original(self, data, *args, **kwargs)

        return write_data

    monkeypatch.setattr(Path, "write_bytes", failing(Path.write_bytes))
    monkeypatch.setattr(Path, "write_text", failing(Path.write_text))
    return writes


# Writes in order: run.json, 3 good copies, then per item its image, mask and record, then the contact sheet.
@pytest.mark.parametrize("write", [1, 3, 5, 9, 13, 29], ids=["run.json", "good copy", "first image", "second mask",
                                                             "third record", "contact sheet"])
def test_full_disk_stops_with_one_line_and_a_rerun_completes(inputs: tuple[Path, Path], tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str], write: int) -> None:
    normals, bank = inputs
    out, num = tmp_path / "out", 8
    _reference(_args(normals, bank, out, num, 3), out, tmp_path / "ref")
    capsys.readouterr()
    with monkeypatch.context() as patch:
        writes = _full_disk_on(write, out, patch)
        assert cli(_args(normals, bank, out, num, 3)) == 2
    failed = writes[write - 1]
    target = failed.parent / failed.name[1:].removesuffix(".tmp" + failed.suffix).rsplit(".", 1)[0]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot write {target}: the disk is full" in err, err
    left = [p for p in out.rglob("*") if p.is_file()]
    assert not [p for p in left if ".tmp" in p.name], "no temporary file left"
    images = {p.stem for p in (out / "defect").glob("*.png")} if (out / "defect").is_dir() else set()
    masks = {p.name.removesuffix("_mask.png") for p in (out / "masks").glob("*.png")} if (out / "masks").is_dir() \
        else set()
    records = {p.stem for p in (out / ".progress").glob("0*.json")} if (out / ".progress").is_dir() else set()
    assert images == masks == records, "no part of an unfinished item is left"
    assert cli(_args(normals, bank, out, num, 3)) == 0
    _assert_same_tree(out, tmp_path / "ref")
