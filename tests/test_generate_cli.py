"""``defectgan generate``: anomalib Folder output, resume after a kill, and bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from anomalib_defectgan.cli import main as cli
from anomalib_defectgan.data.image_io import read_image, read_mask
from anomalib_defectgan.data.manifest import read_manifest
from tests.test_generators_support import make_bank, make_normals, make_tiny_generator


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    return make_normals(tmp_path / "normals", count=3, size=40), make_bank(tmp_path / "bank", per_class=2)


def _args(normals: Path, bank: Path, out: Path, num: int = 6, *extra: str) -> list[str]:
    return ["generate", "--generator", "cutpaste", "--normal-dir", str(normals), "--defect-bank", str(bank),
            "--num", str(num), "--out", str(out), "--batch-size", "4", "--no-progress", *extra]


def test_generate_writes_a_folder_that_anomalib_loads(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    from anomalib.data import Folder

    normals, bank = inputs
    out = tmp_path / "out"
    assert cli(_args(normals, bank, out, 6, "--classes", "spot")) == 0
    frame = read_manifest(out / "manifest.csv")
    defects = frame[frame.label == "defect"]
    assert len(defects) == 6 and set(defects.defect_class) == {"spot"}
    assert (frame.label == "good").sum() == 3
    assert {"donor_path", "top", "left", "flip_h", "flip_v", "normal_path"} <= set(frame.columns)
    for image_path, mask_path in zip(defects.image_path, defects.mask_path, strict=True):
        mask = read_mask(mask_path, shape=read_image(image_path).shape[:2])
        assert mask.any()
    assert (out / "contact_sheet.png").is_file()
    from anomalib_defectgan.generators import DefectBank

    assert DefectBank(out).classes == ["spot"] and len(DefectBank(out)) == 6, "the output is a defect bank"
    assert len(DefectBank(out / "defect")) == 6, "masks found in the Folder layout's sibling masks/"

    datamodule = Folder(name="x", root=out, normal_dir="good", abnormal_dir="defect", mask_dir="masks",
                        train_batch_size=2, eval_batch_size=2, num_workers=0, val_split_mode="same_as_test")
    datamodule.setup()
    test = datamodule.test_data.samples
    assert (test.label_index == 1).sum() == 6
    assert all(Path(m).name == f"{Path(i).stem}_mask.png" for i, m in
               zip(test[test.label_index == 1].image_path, test[test.label_index == 1].mask_path, strict=True))
    batch = next(iter(datamodule.test_dataloader()))
    assert batch.image.shape[1:] == (3, 40, 40)


def test_generate_resumes_after_kill_with_identical_result(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    normals, bank = inputs
    killed, fresh, num = tmp_path / "killed", tmp_path / "fresh", 100
    command = [sys.executable, "-m", "anomalib_defectgan.cli", *_args(normals, bank, killed, num)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if len(list((killed / ".progress").glob("0*.json"))) >= 5:
            os.kill(process.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    process.wait()
    done = len(list((killed / ".progress").glob("0*.json")))
    assert process.returncode == -signal.SIGKILL and 5 <= done < num, "killed half-way"
    assert not (killed / "manifest.csv").exists()

    assert cli(_args(normals, bank, killed, num)) == 0
    assert cli(_args(normals, bank, fresh, num)) == 0
    for folder in ("defect", "masks", "good"):
        names = sorted(p.name for p in (killed / folder).iterdir())
        assert names == sorted(p.name for p in (fresh / folder).iterdir()), "no stale or missing files"
        for name in names:
            assert (killed / folder / name).read_bytes() == (fresh / folder / name).read_bytes()
    assert len(read_manifest(killed / "manifest.csv")) == num + 3


def test_generate_rerun_skips_and_checks_settings(inputs: tuple[Path, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    normals, bank = inputs
    out = tmp_path / "out"
    assert cli(_args(normals, bank, out, 4)) == 0
    first = (out / "defect" / "00000_good_0.png").stat().st_mtime_ns
    assert cli(_args(normals, bank, out, 4)) == 0
    assert (out / "defect" / "00000_good_0.png").stat().st_mtime_ns == first, "finished items are skipped"
    assert cli(_args(normals, bank, out, 4, "--seed", "5")) == 2
    assert "different seed" in capsys.readouterr().err
    assert cli(_args(normals, bank, out, 4, "--seed", "5", "--overwrite")) == 0
    assert len(read_manifest(out)) == 4 + 3
    make_normals(normals, count=4, size=40)  # one more good image: the item names would shift
    assert cli(_args(normals, bank, out, 4, "--seed", "5")) == 2
    assert "different normal_files" in capsys.readouterr().err


def test_generate_unreadable_images_skipped_or_strict(inputs: tuple[Path, Path], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    normals, bank = inputs
    (normals / "broken.png").write_bytes(b"not a png")
    assert cli(_args(normals, bank, tmp_path / "strict", 2, "--strict")) == 2
    assert "broken.png" in capsys.readouterr().err and not (tmp_path / "strict").exists()
    assert cli(_args(normals, bank, tmp_path / "lenient", 2)) == 0
    assert "skipping unreadable images 1: broken.png" in capsys.readouterr().err
    assert "broken" not in (tmp_path / "lenient" / "manifest.csv").read_text()


def test_generate_with_defectgan_checkpoint(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    normals, bank = inputs
    checkpoint = make_tiny_generator(tmp_path / "gen")
    out = tmp_path / "out"
    args = _args(normals, bank, out, 3, "--checkpoint", str(checkpoint), "--channels", "3")
    args[args.index("cutpaste")] = "defectgan"
    assert cli(args) == 0
    frame = read_manifest(out)
    defects = frame[frame.label == "defect"]
    assert len(defects) == 3 and set(defects.generator) == {"defectgan"} and set(defects.window) == {"32"}
    assert read_image(defects.image_path.iloc[0], channels=3).shape == (40, 40, 3)
    nothing = _args(normals, bank, tmp_path / "none", 2, "--checkpoint", str(checkpoint), "--mask-threshold", "2",
                    "--mask-source", "gan")
    nothing[nothing.index("cutpaste")] = "defectgan"
    assert cli(nothing) == 2, "a generator that paints nothing is an error, not an empty dataset"
    assert not (tmp_path / "none" / "manifest.csv").exists()


def test_generate_min_strength_records_each_defects_strength(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    import json

    normals, bank = inputs
    checkpoint = make_tiny_generator(tmp_path / "gen", defect_path="composite")
    out = tmp_path / "out"
    args = _args(normals, bank, out, 4, "--checkpoint", str(checkpoint), "--min-strength", "0.3")
    args[args.index("cutpaste")] = "defectgan"
    assert cli(args) == 0
    defects = read_manifest(out).query("label == 'defect'")
    strengths = defects.strength.astype(float)
    assert len(defects) >= 1 and strengths.between(0.3, 1.0).all()
    assert json.loads((out / ".progress" / "run.json").read_text())["min_strength"] == 0.3
    bad = _args(normals, bank, tmp_path / "bad", 2, "--checkpoint", str(checkpoint), "--min-strength", "0")
    bad[bad.index("cutpaste")] = "defectgan"
    assert cli(bad) == 2, "min_strength 0 is named, not a traceback"


@pytest.mark.parametrize("problem", ["empty normal dir", "no usable class", "not writable", "foreign out",
                                     "missing checkpoint", "wrong checkpoint kind", "bad window"])
def test_generate_bad_input_fails_cleanly(inputs: tuple[Path, Path], tmp_path: Path, problem: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    normals, bank = inputs
    out = tmp_path / "out"
    args = _args(normals, bank, out, 2)
    expected = {"empty normal dir": "no images found", "no usable class": "no usable defects for classes ['crazing']",
                "not writable": "not writable", "foreign out": "not empty",
                "missing checkpoint": "needs --checkpoint",
                "wrong checkpoint kind": "expected 'defectgan-generator' (not a DefectGan generator)",
                "bad window": "window must be a positive multiple of the GAN's code stride 8, got 36"}[problem]
    if problem == "empty normal dir":
        (tmp_path / "empty").mkdir()
        args = _args(tmp_path / "empty", bank, out, 2)
    elif problem == "no usable class":
        args += ["--classes", "crazing"]
    elif problem == "not writable":
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "out"
        args = _args(normals, bank, out, 2)
    elif problem == "foreign out":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    elif problem == "missing checkpoint":
        args[args.index("cutpaste")] = "defectgan"
    elif problem == "bad window":
        args[args.index("cutpaste")] = "defectgan"
        args += ["--checkpoint", str(make_tiny_generator(tmp_path / "gen")), "--window", "36"]
    else:
        (tmp_path / "ckpt").mkdir()
        (tmp_path / "ckpt" / "generator.json").write_text('{"kind": "defect-classifier"}')
        (tmp_path / "ckpt" / "generator.safetensors").write_bytes(b"")
        args[args.index("cutpaste")] = "defectgan"
        args += ["--checkpoint", str(tmp_path / "ckpt")]
    assert cli(args) == 2
    assert expected in capsys.readouterr().err
    if problem == "foreign out":
        assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    else:
        assert not out.exists(), "nothing partial is left"


def test_generate_nsa_poisson_blends_and_masks_exactly_the_changed_pixels(inputs: tuple[Path, Path],
                                                                          tmp_path: Path) -> None:
    normals, bank = inputs
    out = tmp_path / "nsa"
    args = _args(normals, bank, out, 4)
    args[args.index("cutpaste")] = "nsa"
    assert cli(args) == 0
    frame = read_manifest(out / "manifest.csv")
    defects = frame[frame.label == "defect"]
    assert len(defects) == 4 and set(defects["generator"]) == {"nsa"}
    for _, row in defects.iterrows():
        image = read_image(row["image_path"]).astype(int)
        normal = read_image(row["normal_path"]).astype(int)
        mask = read_mask(row["mask_path"], shape=image.shape[:2])
        changed = np.abs(image - normal).max(axis=-1) > 0 if image.ndim == 3 else image != normal
        assert mask.any() and not (changed & ~mask).any(), "nothing outside the mask changed"
