"""`defectgan benchmark new-grade` keeps finished runs, and refuses ones made with other settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from anomalib_defectgan.benchmark import new_grade
from anomalib_defectgan.benchmark.classifier_run import ArmResult, ClassifierSettings
from anomalib_defectgan.benchmark.new_grade_protocol import new_grade_split
from anomalib_defectgan.data.manifest import read_manifest
from anomalib_defectgan.data.synthetic_steel import HeldOutGrade
from anomalib_defectgan.errors import DefectGanError
from tests.helpers import write_blob_dataset


def test_finished_runs_are_reused_only_with_the_same_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    frame = read_manifest(write_blob_dataset(tmp_path / "d", size=32, per_class=4, goods=6))
    frame.loc[(frame["label"] == "good") & (frame.index % 3 == 0), "split"] = "test"
    grade = min(frame["grade"].unique())
    split = new_grade_split(frame, grade)
    trained = []

    def fake_train(manifest, generator, settings, seed, root, name):
        trained.append(seed)
        rows = len(split.test)
        labels = np.arange(rows) % 2
        return ArmResult({"error": 0.5, "auroc": 0.5 + seed / 10, "ap": 0.5, "pixel_auroc": 0.5}, labels,
                         labels * 0.5 + 0.25, labels, [f"{i}.png" for i in range(rows)])

    monkeypatch.setattr(new_grade, "train_and_test", fake_train)
    settings = ClassifierSettings(max_steps=3, image_size=32, progress=False)
    run = {"split": split, "title": grade, "out": tmp_path / "bench", "arms": ["none"], "seeds": [0, 1],
           "gan_config": "unused", "gan_steps": None}
    first = new_grade.run_benchmark(settings=settings, **run)
    assert trained == [0, 1]
    again = new_grade.run_benchmark(settings=settings, **run)
    assert trained == [0, 1], "finished runs are not trained again"
    assert again["summary"]["none"]["auroc"] == pytest.approx(first["summary"]["none"]["auroc"]) == 0.55
    with pytest.raises(DefectGanError, match=r"none_seed0/result\.json: a finished run made with other settings"):
        new_grade.run_benchmark(settings=ClassifierSettings(max_steps=4, image_size=32, progress=False), **run)


def test_more_steel_world_test_images_are_rendered_once_and_other_counts_are_refused(tmp_path: Path) -> None:
    held_out = HeldOutGrade("pickled", per_class=4, goods=2)
    manifest = new_grade.prepare_dataset("steel-world", tmp_path, None, None, 32, 3, 5, 0, held_out)
    pickled = read_manifest(manifest).query("grade == 'pickled'")
    assert pickled.query("label == 'defect'").groupby("defect_class").size().eq(4).all()
    assert len(pickled.query("label == 'good' and split == 'test'")) == 2
    stamp = manifest.stat().st_mtime_ns
    assert new_grade.prepare_dataset("steel-world", tmp_path, None, None, 32, 3, 5, 0, held_out) == manifest
    assert manifest.stat().st_mtime_ns == stamp, "a rendered world is reused, not rendered again"
    with pytest.raises(DefectGanError, match=r"manifest.csv: grade 'pickled' holds .* not the 6 and 2 asked for"):
        new_grade.prepare_dataset("steel-world", tmp_path, None, None, 32, 3, 5, 0, HeldOutGrade("pickled", 6, 2))


@pytest.mark.parametrize("option", [["--test-goods", "200"], ["--test-per-class", "50"]])
def test_more_test_images_are_refused_for_a_dataset_that_cannot_render_them(tmp_path: Path, option: list[str]) -> None:
    with pytest.raises(DefectGanError, match=f"{option[0]} renders steel-world images; aitex cannot"):
        new_grade.main(["--dataset", "aitex", *option, "--out", str(tmp_path / "bench")])
    assert not (tmp_path / "bench").exists()


def test_test_per_class_is_the_few_shot_held_out_count(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    asked = {}

    def stop(frame, out, patch, test_per_class, shots, **kwargs):
        asked["test_per_class"] = test_per_class
        raise DefectGanError("stop here")

    from anomalib_defectgan.benchmark import few_shot_patches
    monkeypatch.setattr(few_shot_patches, "few_shot_patch_split", stop)
    monkeypatch.setattr(new_grade, "prepare_dataset", lambda *args: write_blob_dataset(tmp_path / "d", size=32))
    for option, expected in (([], new_grade.FEW_SHOT_TEST_PER_CLASS), (["--test-per-class", "7"], 7)):
        with pytest.raises(DefectGanError, match="stop here"):
            new_grade.main(["--dataset", "sd-saliency", *option, "--out", str(tmp_path / "bench")])
        assert asked["test_per_class"] == expected
