"""`defectgan benchmark new-grade` reports paired differences, the GAN's iterations and small-test warnings."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch

from anomalib_defectgan.benchmark import new_grade
from anomalib_defectgan.benchmark.classifier_run import ArmResult, ClassifierSettings
from anomalib_defectgan.benchmark.new_grade_protocol import new_grade_split
from anomalib_defectgan.data.manifest import read_manifest
from anomalib_defectgan.errors import DefectGanError
from tests.helpers import write_blob_dataset


def _fake_fit(root: Path, global_step: int, max_steps: int, max_time: str | None) -> Path:
    """What ``defectgan fit`` leaves behind: generator folder, saved config, end checkpoint."""
    version = root / "version_0"
    (version / "generator").mkdir(parents=True)
    (version / "generator" / "generator.json").write_text("{}")
    (version / "config.yaml").write_text(f"trainer:\n  max_steps: {max_steps}\n  max_time: {max_time or 'null'}\n")
    (root / "final").mkdir()
    torch.save({"global_step": global_step, "epoch": 0}, root / "final" / "last.ckpt")
    return version / "generator"


def test_gan_iterations_come_from_the_end_checkpoint(tmp_path: Path) -> None:
    torch.save({"global_step": 7, "state_dict": {"w": torch.zeros(2)}}, tmp_path / "last.ckpt")
    assert new_grade.gan_iterations(tmp_path / "last.ckpt") == 7
    assert new_grade.gan_iterations(tmp_path / "missing.ckpt") is None


def test_fit_gan_reports_iterations_and_warns_when_the_time_cap_cut_them(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    commands = []

    def fake_run(command: list[str], check: bool) -> None:
        commands.append(command)
        _fake_fit(tmp_path / "gan", global_step=412, max_steps=900, max_time="00:00:12:00")

    monkeypatch.setattr(subprocess, "run", fake_run)
    fit = new_grade.fit_gan(tmp_path / "m.csv", "defect_gan/cpu.yaml", tmp_path / "gan", 900, [], "00:00:12:00")
    command = " ".join(commands[0])
    assert "--trainer.max_steps 900" in command and "--trainer.max_time 00:00:12:00" in command
    assert f"--trainer.callbacks.dirpath {tmp_path / 'gan' / 'final'}" in command
    assert fit.generator_dir == tmp_path / "gan" / "version_0" / "generator"
    assert (fit.iterations, fit.max_steps, fit.max_time) == (412, 900, "00:00:12:00") and fit.cut_short
    assert fit.line == "GAN: 412 iterations (budget 900; time cap 00:00:12:00)."
    assert fit.warning.startswith("Warning: the time cap (00:00:12:00) stopped the GAN after 412 of its 900")

    again = new_grade.fit_gan(tmp_path / "m.csv", "defect_gan/cpu.yaml", tmp_path / "gan", 900, [])
    assert len(commands) == 1 and again == fit, "a finished GAN is reused, with its numbers"


def test_a_full_budget_gives_no_warning(tmp_path: Path) -> None:
    _fake_fit(tmp_path, global_step=20, max_steps=20, max_time="10:00:12:00")
    fit = new_grade.fit_gan(tmp_path / "m.csv", "unused", tmp_path, None, [])
    assert (fit.iterations, fit.max_steps, fit.max_time) == (20, 20, "10:00:12:00"), "not read as a base-60 int"
    assert not fit.cut_short and fit.warning is None
    assert fit.line == "GAN: 20 iterations (budget 20; time cap 10:00:12:00)."
    assert not new_grade.GanFit(fit.generator_dir, None, 20, None).cut_short
    assert new_grade.GanFit(fit.generator_dir, 10, 20, None).warning.startswith(
        "Warning: the GAN stopped after 10 of its 20 iterations")
    assert new_grade.GanFit(fit.generator_dir, None, None, None).line == (
        "GAN: an unknown number of iterations (budget none; time cap none).")


@pytest.fixture
def benchmark_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    frame = read_manifest(write_blob_dataset(tmp_path / "d", size=32, per_class=4, goods=6))
    frame.loc[(frame["label"] == "good") & (frame.index % 3 == 0), "split"] = "test"
    grade = min(frame["grade"].unique())
    split = new_grade_split(frame, grade)
    auroc = {"none": 0.6, "perlin": 0.7, "cutpaste": 0.8, "nsa": 0.75, "defectgan": 0.9}
    error = {"none": 0.4, "perlin": 0.1, "cutpaste": 0.3, "nsa": 0.2, "defectgan": 0.2}

    def fake_train(manifest, generator, settings, seed, root, name):
        arm = name.rsplit("_", 1)[1]
        labels = (split.test["label"] == "defect").to_numpy().astype(int)
        metrics = {"error": error[arm] + seed / 100, "auroc": auroc[arm] - seed / 100, "ap": 0.5, "pixel_auroc": 0.5}
        first_class = (split.test["defect_class"] == sorted(set(split.test["defect_class"]) - {"good"})[0]).to_numpy()
        scores = labels * 0.5 + 0.25 - 0.6 * (first_class & (arm == "defectgan"))  # defectgan misses one class
        return ArmResult(metrics, labels, scores, labels, [str(p) for p in split.test["image_path"]])

    def fake_fit_gan(manifest, config, out, max_steps, extra, max_time=None):
        return new_grade.GanFit(_fake_fit(out, 300, max_steps, max_time), 300, max_steps, max_time)

    monkeypatch.setattr(new_grade, "train_and_test", fake_train)
    monkeypatch.setattr(new_grade, "fit_gan", fake_fit_gan)
    monkeypatch.setattr(new_grade, "build_generator", lambda *args, **kwargs: None)
    monkeypatch.setattr(new_grade, "_window_warning", lambda donors, generator_dir, window=None: None)
    return {"split": split, "title": grade, "out": tmp_path / "bench", "arms": list(auroc), "seeds": [0, 1],
            "settings": ClassifierSettings(max_steps=3, image_size=32, progress=False), "gan_config": "unused",
            "gan_steps": 900, "gan_max_time": "00:00:12:00", "frame": frame}


def test_results_hold_paired_differences_gan_iterations_and_warnings(benchmark_inputs: dict) -> None:
    split = benchmark_inputs["split"]
    goods, defects = int((split.test["label"] == "good").sum()), int((split.test["label"] == "defect").sum())
    results = new_grade.run_benchmark(**benchmark_inputs)
    out = benchmark_inputs["out"]
    saved = json.loads((out / "results.json").read_text())
    assert saved["test_goods"] == goods > 0 and saved["test_defects"] == defects
    assert saved["gan_iterations"] == 300 and saved["gan_budget"] == {"max_steps": 900, "max_time": "00:00:12:00"}
    paired = saved["paired_vs_best_baseline"]
    assert paired["baseline"] == "cutpaste", "chosen by AUROC, not by error (perlin has the lowest error)"
    assert paired["seeds"] == [0, 1] and paired["auroc"]["per_seed"] == pytest.approx([0.1, 0.1])
    assert saved["relative_error_reduction"]["best_baseline"] == "cutpaste"
    assert results["paired_vs_best_baseline"]["error"]["mean"] == pytest.approx(-0.1)
    text = (out / "results.md").read_text()
    assert f"Warning: only {goods} good test images" in text
    assert "GAN: 300 iterations (budget 900; time cap 00:00:12:00)." in text
    assert "Warning: the time cap (00:00:12:00) stopped the GAN after 300 of its 900 iterations" in text
    assert "| auroc | +0.100 | +0.100 | +0.100 +- 0.000 |" in text
    assert len(saved["warnings"]) == 2
    defects = split.test.loc[split.test["label"] == "defect", "defect_class"]
    names = sorted(set(defects))
    assert len(names) > 1 and saved["class_auroc"]["defectgan"] == {names[0]: 0.0, **dict.fromkeys(names[1:], 1.0)}
    assert saved["class_auroc"]["cutpaste"] == dict.fromkeys(names, 1.0)
    assert "| arm | " + " | ".join(names) + " |" in text
    assert "| defectgan | 0.000 +- 0.000 | " + " | ".join(["1.000 +- 0.000"] * (len(names) - 1)) + " |" in text
    assert f"Fewer than 100 test defects, too few for these columns to rank arms: {names[0]} (" in text


def test_no_small_test_warning_when_the_test_split_is_large_enough(benchmark_inputs: dict,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(new_grade, "MIN_TEST_IMAGES", 1)
    benchmark_inputs["gan_steps"] = 300
    new_grade.run_benchmark(**benchmark_inputs)
    text = (benchmark_inputs["out"] / "results.md").read_text()
    assert "Warning" not in text and "GAN: 300 iterations (budget 300;" in text
    assert json.loads((benchmark_inputs["out"] / "results.json").read_text())["warnings"] == []


def test_without_a_baseline_there_is_no_paired_table(benchmark_inputs: dict) -> None:
    results = new_grade.run_benchmark(**{**benchmark_inputs, "arms": ["none", "defectgan"], "seeds": [0]})
    assert results["paired_vs_best_baseline"] == {}
    assert results["relative_error_reduction"]["best_baseline"] == ""
    assert "Paired differences" not in (benchmark_inputs["out"] / "results.md").read_text()


def test_donors_larger_than_the_gan_window_are_reported(tmp_path: Path) -> None:
    from tests.test_generators_support import make_bank, make_tiny_generator

    bank = make_bank(tmp_path / "bank", size=48)  # scratches run across the 48 px donors
    warning = new_grade._window_warning(bank, make_tiny_generator(tmp_path / "gen", crop_size=32))
    assert warning is not None and "larger than the GAN's 32 px window" in warning and "'scratch'" in warning
    assert "'spot'" not in warning, "the bank's spots (radius <= 6 px) fit the window"
    assert new_grade._window_warning(bank, make_tiny_generator(tmp_path / "gen64", crop_size=64)) is None
    assert new_grade._window_warning(bank, None) is None


def test_composite_mode_reaches_the_generator_and_is_recorded(benchmark_inputs: dict,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    monkeypatch.setattr(new_grade, "build_generator", lambda arm, *args, **kwargs: seen.append((arm, kwargs)))
    inputs = {**benchmark_inputs, "generator_dir": benchmark_inputs["out"] / "given_gan"}
    results = new_grade.run_benchmark(**{**inputs, "arms": ["cutpaste", "defectgan"], "seeds": [0],
                                         "composite_mode": "paste"})
    assert [arm for arm, _ in seen] == ["cutpaste", "defectgan"]
    assert all(kwargs["transfer"]["composite_mode"] == "paste" for _, kwargs in seen)
    assert results["composite_mode"] == "paste"
    saved = json.loads((benchmark_inputs["out"] / "runs" / "defectgan_seed0" / "result.json").read_text())
    assert saved["run"]["composite_mode"] == "paste"
    with pytest.raises(DefectGanError, match="a finished run made with other settings"):
        new_grade.run_benchmark(**{**inputs, "arms": ["defectgan"], "seeds": [0]})


def test_gan_seeds_train_one_gan_each_and_report_the_spread_between_trainings(
        benchmark_inputs: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    fits, trained_with = [], []

    def fake_fit_gan(manifest, config, out, max_steps, extra, max_time=None):
        generator = out / "version_0" / "generator"
        if not generator.is_dir():  # as fit_gan, a finished GAN is reused
            fits.append((out.name, extra))
            generator = _fake_fit(out, 300, max_steps, max_time)
        return new_grade.GanFit(generator, 300, max_steps, max_time)

    def fake_train(manifest, generator, settings, seed, root, name):
        trained_with.append((name.rsplit("_", 1)[1], generator, seed))
        labels = (benchmark_inputs["split"].test["label"] == "defect").to_numpy().astype(int)
        gan_shift = {None: 0.0, "gan_seed3": 0.0, "gan_seed5": 0.1}[generator.parts[-3] if generator else None]
        metrics = {"error": 0.3 - gan_shift + seed / 100, "auroc": 0.8 + gan_shift - seed / 100, "ap": 0.5,
                   "pixel_auroc": 0.5}
        return ArmResult(metrics, labels, labels * 0.5, labels, [str(p) for p in benchmark_inputs["split"].test["image_path"]])

    monkeypatch.setattr(new_grade, "fit_gan", fake_fit_gan)
    monkeypatch.setattr(new_grade, "train_and_test", fake_train)
    monkeypatch.setattr(new_grade, "build_generator",
                        lambda arm, donors, generator_dir, **kwargs: generator_dir if arm == "defectgan" else None)
    out = benchmark_inputs["out"]
    results = new_grade.run_benchmark(**{**benchmark_inputs, "arms": ["cutpaste", "defectgan"], "gan_seeds": [3, 5]})
    assert fits == [("gan_seed3", ["--seed_everything", "3"]), ("gan_seed5", ["--seed_everything", "5"])]
    gan_runs = sorted((g.parts[-3], s) for arm, g, s in trained_with if arm == "defectgan")
    assert gan_runs == [("gan_seed3", 0), ("gan_seed3", 1), ("gan_seed5", 0), ("gan_seed5", 1)]
    assert (out / "runs" / "defectgan_gan5_seed1" / "result.json").is_file()
    assert not (out / "runs" / "defectgan_seed0").exists()
    spread = results["gan_training_spread"]
    assert spread["per_gan"][3]["auroc"] == pytest.approx(0.795) and spread["per_gan"][5]["auroc"] == pytest.approx(0.895)
    assert spread["auroc"]["between_gans"] == pytest.approx(0.1 / 2 ** 0.5)
    assert spread["auroc"]["within_gan"] == pytest.approx(0.01 / 2 ** 0.5)
    paired = results["paired_vs_best_baseline"]
    assert paired["gan_seeds"] == [3, 3, 5, 5] and paired["seeds"] == [0, 1, 0, 1]
    assert paired["auroc"]["per_seed"] == pytest.approx([0.0, 0.0, 0.1, 0.1])
    assert [t["gan_seed"] for t in results["gan_trainings"]] == [3, 5]
    text = (out / "results.md").read_text()
    assert "GAN seed 3: GAN: 300 iterations" in text and "GAN seed 5: Warning: the time cap" in text
    assert "| 5 | 2 | 0.205 | 0.895 |" in text and "0.071 between GAN trainings" in text
    assert "| GAN 3 seed 0 | GAN 3 seed 1 | GAN 5 seed 0 | GAN 5 seed 1 |" in text

    again = new_grade.run_benchmark(**{**benchmark_inputs, "arms": ["cutpaste", "defectgan"], "gan_seeds": [3, 5]})
    assert len(fits) == 2 and len(trained_with) == 6, "finished GANs and runs are reused, not trained again"
    assert again["gan_training_spread"] == spread


@pytest.mark.parametrize("gan_seeds", [[], [1, 1]])
def test_gan_seeds_must_be_distinct(benchmark_inputs: dict, gan_seeds: list[int]) -> None:
    with pytest.raises(DefectGanError, match="--gan-seeds needs distinct seeds"):
        new_grade.run_benchmark(**{**benchmark_inputs, "gan_seeds": gan_seeds})


def test_gan_seeds_cannot_retrain_a_given_generator(benchmark_inputs: dict) -> None:
    with pytest.raises(DefectGanError, match="not with --generator"):
        new_grade.run_benchmark(**{**benchmark_inputs, "generator_dir": benchmark_inputs["out"] / "g", "gan_seeds": [1]})


def test_gan_seeds_without_the_defectgan_arm_train_nothing(benchmark_inputs: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(new_grade, "fit_gan", lambda *args, **kwargs: pytest.fail("no GAN is needed"))
    results = new_grade.run_benchmark(**{**benchmark_inputs, "arms": ["cutpaste"], "gan_seeds": [1, 2]})
    assert results["gan_trainings"] == [] and results["gan_training_spread"] == {}
