"""``defectgan benchmark gan-quality``: Frechet distance, mask tightness, an end-to-end run, bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from anomalib_defectgan.benchmark.gan_quality.metrics import frechet_distance, mask_tightness, matched_frechet
from anomalib_defectgan.benchmark.gan_quality.sampling import Generated
from anomalib_defectgan.commands.gan_quality import main
from anomalib_defectgan.data.manifest import read_manifest, write_manifest
from anomalib_defectgan.errors import DefectGanError
from tests.test_generators_support import make_tiny_generator

CLASSES = ("scratches", "patches")
GRADES = ("hot_rolled", "pickled")
FAST = ["--evaluator-steps", "5", "--num", "8", "--threads", "1", "--repeats", "5"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny rendered steel world (64 px, 2 grades x 2 classes) and an untrained 1-channel generator."""
    from anomalib_defectgan.data.synthetic_steel import make_synthetic_steel

    root = tmp_path_factory.mktemp("gan_quality")
    make_synthetic_steel(root / "world", size=64, per_class=3, good_per_grade=3, seed=0, grades=list(GRADES),
                         classes=list(CLASSES), progress=False)
    generator = make_tiny_generator(root / "generator", classes=CLASSES, crop_size=32)
    return root / "world" / "manifest.csv", generator


# ----------------------------------------------------------------------------------------- Frechet


def test_frechet_of_identical_sets_is_zero() -> None:
    feats = np.random.default_rng(0).normal(size=(40, 6))
    assert frechet_distance(feats, feats) == pytest.approx(0.0, abs=1e-6)


def test_frechet_of_a_shifted_copy_is_the_squared_shift() -> None:
    feats = np.random.default_rng(1).normal(size=(200, 4))
    shift = np.array([1.0, -2.0, 0.5, 0.0])
    assert frechet_distance(feats, feats + shift) == pytest.approx(float(shift @ shift), abs=1e-5)


def test_frechet_matches_the_closed_form_of_two_gaussians() -> None:
    rng = np.random.default_rng(2)
    mu, sigma = np.array([1.0, 2.0, 0.0]), np.array([1.0, 2.0, 0.5])
    a = rng.normal(size=(20000, 3))
    b = mu + sigma * rng.normal(size=(20000, 3))
    expected = float(mu @ mu + ((1.0 - sigma) ** 2).sum())  # diagonal covariances: sum (s_a - s_b)^2
    assert expected == pytest.approx(6.25)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=0.03)
    assert frechet_distance(b, a) == pytest.approx(frechet_distance(a, b), rel=1e-6)


def test_frechet_is_finite_with_fewer_samples_than_dimensions() -> None:
    rng = np.random.default_rng(3)
    value = frechet_distance(rng.normal(size=(3, 32)), rng.normal(size=(4, 32)) + 1.0)
    assert math.isfinite(value) and value > 0


def test_matched_frechet_ranks_a_far_set_above_the_real_anchor() -> None:
    rng = np.random.default_rng(4)
    real = rng.normal(size=(40, 5))
    result = matched_frechet(real, {"close": rng.normal(size=(100, 5)), "far": rng.normal(size=(100, 5)) + 3.0},
                             repeats=5)
    assert set(result) == {"real_vs_real", "close", "far"}
    assert result["real_vs_real"]["half"] == 20
    assert result["far"]["mean"] > 30 > 5 * result["close"]["mean"]
    assert result["close"]["mean"] < 3 * result["real_vs_real"]["mean"]


# ----------------------------------------------------------------------------------------- mask tightness


def test_mask_tightness_on_hand_made_images() -> None:
    canvas = torch.zeros(2, 1, 8, 8)
    output = canvas.clone()
    output[0, :, :4, :4] = 1.0  # 16 changed pixels
    output[0, :, 7, 7] = 0.01  # below tau: not a change
    mask = torch.zeros(2, 1, 8, 8)
    mask[0, :, :4, :2] = 0.9  # 8 of the changed pixels ...
    mask[0, :, 4:6, :4] = 0.6  # ... and 8 unchanged ones
    mask[0, :, 6:, :] = 0.4  # below the mask threshold
    # image 2: energy 1 per pixel inside the mask (4 px), 0.25 outside (4 px) -> leak 1 / 5
    output[1, :, 0, :4] = 1.0
    output[1, :, 1, :4] = 0.5
    mask[1, :, 0, :4] = 1.0
    iou, leak = mask_tightness(output, canvas, mask, tau=0.05)
    assert iou[0] == pytest.approx(8 / 24)
    assert leak[0] == pytest.approx(0.5)
    assert iou[1] == pytest.approx(4 / 8)
    assert leak[1] == pytest.approx(1.0 / 5.0)


def test_mask_tightness_of_nothing_is_nan_not_perfect() -> None:
    canvas = torch.rand(1, 3, 8, 8)
    iou, leak = mask_tightness(canvas.clone(), canvas, torch.zeros(1, 1, 8, 8))
    assert math.isnan(iou[0]) and math.isnan(leak[0])


def test_generated_crop_is_centred_on_the_mask() -> None:
    canvas = torch.zeros(1, 64, 64)
    output, mask = canvas.clone(), torch.zeros(1, 64, 64)
    output[:, 60:, 60:] = 1.0
    mask[:, 60:, 60:] = 1.0
    samples = Generated()
    samples.add(output, canvas, mask, (0, 0), 16, "scratches", "pickled", np.random.default_rng(0))
    assert samples.crops[0].shape == (1, 16, 16)
    assert samples.crops[0][:, -4:, -4:].min() == 1.0 and samples.empty == 0
    assert samples.iou == [1.0] and samples.leak == [0.0]


# ----------------------------------------------------------------------------------------- end to end


@pytest.mark.parametrize("new_grade", [None, "pickled"])
def test_end_to_end_json_has_every_metric(world: tuple[Path, Path], new_grade: str | None,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    manifest, generator = world
    extra = ["--new-grade", new_grade] if new_grade else []
    assert main(["--generator", str(generator), "--manifest", str(manifest), "--json", "q.json", *FAST, *extra]) == 0
    printed = capsys.readouterr().out
    results = json.loads(Path("q.json").read_text())
    assert "FID" not in printed and "FID" not in json.dumps(results)
    assert "| defectgan | 8 |" in printed and "| cutpaste | 8 |" in printed and "| nsa | 8 |" in printed
    assert results["canvas_grades"] == ([new_grade] if new_grade else sorted(GRADES))
    evaluator = results["evaluator"]
    for key in ("class_accuracy", "grade_accuracy"):
        assert 0.0 <= evaluator[key] <= 1.0
    assert evaluator["val_crops"] > 0
    frechet = results["frechet"]
    assert frechet["reference_defects"] == (4 if new_grade else 8)  # val + test defects (of the new grade)
    arms = ("defectgan", "cutpaste", "nsa")
    for name in ("real_vs_real", *arms):
        assert math.isfinite(frechet[name]["mean"]) and frechet[name]["mean"] >= 0
        assert frechet[name]["half"] == frechet["reference_defects"] // 2
    for arm in arms:
        assert frechet[arm]["ratio_to_real"] == pytest.approx(frechet[arm]["mean"] / frechet["real_vs_real"]["mean"])
    for arm in arms:
        row = results["generated"][arm]
        assert row["samples"] == 8
        for key in ("class_accuracy", "grade_accuracy", "mask_iou", "leak", "predicted_good"):
            assert row[key] is not None and 0.0 <= row[key] <= 1.0, (arm, key, row[key])
        assert set(row["class_accuracy_per_class"]) <= set(CLASSES)
    # every generator as shipped labels exactly the pixels it changed: none leaks
    for arm in arms:
        assert results["generated"][arm]["leak"] == 0.0, arm


def test_figure_rows_show_the_composite_the_gan_refined(world: tuple[Path, Path], tmp_path: Path) -> None:
    """An untrained composite-path GAN is the identity of its composite: output == composite in the window."""
    from PIL import Image

    from anomalib_defectgan.benchmark.transfer_figure import COLUMNS, transfer_rows
    from anomalib_defectgan.generators import DefectTransferGenerator

    manifest, _ = world
    generator = make_tiny_generator(tmp_path / "composite", classes=CLASSES, crop_size=32, defect_path="composite")
    figure = tmp_path / "grid.png"
    assert main(["--generator", str(generator), "--manifest", str(manifest), "--new-grade", "pickled",
                 "--figure", str(figure), "--figure-per-class", "1", *FAST]) == 0
    assert Image.open(figure).size[1] > 100
    frame = read_manifest(manifest)
    donors = write_manifest(frame[(frame["label"] == "defect") & (frame["grade"] == "hot_rolled")],
                            tmp_path / "donors" / "manifest.csv")
    painter = DefectTransferGenerator(generator, donors, probability=1.0, seed=0, placement="window", edge_margin=0,
                                      cache_dir=tmp_path / "codes")
    rows = transfer_rows(painter, torch.rand(2, 1, 48, 48) * 0.1 + 0.45, [0, 1])
    assert len(rows) == 2
    for row in rows:
        assert set(COLUMNS) <= set(row) and all(row[c].shape == (32, 32) for c in COLUMNS)
        changed = row["output"] != row["canvas"]
        assert np.abs(row["output"].astype(int) - row["composite"].astype(int)).max() <= 2  # min_change: 2/255
        assert (row["mask"] > 0).any() and not (changed & (row["mask"] == 0)).any()
    with pytest.raises(DefectGanError, match="edge_margin"):
        transfer_rows(DefectTransferGenerator(generator, donors, cache_dir=tmp_path / "codes", edge_margin=None),
                      torch.rand(1, 1, 48, 48), [0])


def test_composite_mode_is_painted_recorded_and_refused_for_the_code_path(
        world: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest, code_path_generator = world
    generator = make_tiny_generator(tmp_path / "composite", classes=CLASSES, crop_size=32, defect_path="composite",
                                    composite_mode="residual")
    common = ["--generator", str(generator), "--manifest", str(manifest), "--new-grade", "pickled", *FAST]
    assert main([*common, "--json", str(tmp_path / "as_trained.json")]) == 0
    assert main([*common, "--composite-mode", "paste", "--json", str(tmp_path / "paste.json")]) == 0
    printed = capsys.readouterr().out
    assert "composite_mode paste" in printed and "composite_mode as trained" in printed
    as_trained, paste = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("as_trained", "paste"))
    assert as_trained["composite_mode"] is None and paste["composite_mode"] == "paste"
    assert paste["generated"]["cutpaste"] == as_trained["generated"]["cutpaste"], "the same canvases and donors"
    assert paste["generated"]["defectgan"] != as_trained["generated"]["defectgan"], "painted another way"
    with pytest.raises(DefectGanError, match="composite"):
        main(["--generator", str(code_path_generator), "--manifest", str(manifest), "--composite-mode", "paste", *FAST])


# ----------------------------------------------------------------------------------------- bad input


def test_missing_generator_folder_is_named(world: tuple[Path, Path]) -> None:
    manifest, _ = world
    with pytest.raises(DefectGanError, match=r"nowhere: generator folder not found"):
        main(["--generator", "nowhere", "--manifest", str(manifest), *FAST])


def test_manifest_without_defects_is_refused(world: tuple[Path, Path]) -> None:
    manifest, generator = world
    frame = read_manifest(manifest)
    goods = write_manifest(frame[frame["label"] == "good"], Path("goods") / "manifest.csv")
    with pytest.raises(DefectGanError, match=r"goods/manifest.csv: no defect rows with a mask"):
        main(["--generator", str(generator), "--manifest", str(goods), *FAST])


def test_unknown_new_grade_is_named(world: tuple[Path, Path]) -> None:
    manifest, generator = world
    with pytest.raises(DefectGanError, match=r"manifest.csv: new grade 'galvanised' is not in the manifest; "
                                             r"grades: \['hot_rolled', 'pickled'\]"):
        main(["--generator", str(generator), "--manifest", str(manifest), "--new-grade", "galvanised", *FAST])


def test_channel_mismatch_is_named(world: tuple[Path, Path]) -> None:
    manifest, _ = world
    colour = make_tiny_generator(Path("colour"), classes=CLASSES, channels=3, crop_size=32)
    with pytest.raises(DefectGanError, match=r"colour/generator.json: the generator works on 3-channel images but "
                                             r"the images of .*manifest.csv are greyscale"):
        main(["--generator", str(colour), "--manifest", str(manifest), *FAST])
