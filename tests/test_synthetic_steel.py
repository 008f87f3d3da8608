"""The procedural steel world: determinism, exact masks, layout, manifest, grades, pairs, anomalib."""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anomalib_defectgan.data.image_io import read_image, read_mask
from anomalib_defectgan.data.manifest import read_manifest, write_manifest
from anomalib_defectgan.data.steel_world.render import render_defect, render_good
from anomalib_defectgan.data.synthetic_steel import (
    CLASSES,
    GRADE_NAMES,
    MASK_THRESHOLD,
    HeldOutGrade,
    defect_split_counts,
    make_synthetic_steel,
)
from anomalib_defectgan.errors import DefectGanError

SMALL = {"size": 64, "per_class": 3, "good_per_grade": 3, "progress": False}


def _hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """All grades and classes, 64 px, 3 instances each: 4 x (3 + 6 x 3) = 84 images."""
    out = tmp_path_factory.mktemp("steel") / "ds"
    return out, make_synthetic_steel(out, seed=5, **SMALL)


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path: Path) -> None:
    args = {**SMALL, "per_class": 1, "good_per_grade": 2, "grades": ["hot_rolled", "galvanized"]}
    make_synthetic_steel(tmp_path / "a", seed=11, **args)
    make_synthetic_steel(tmp_path / "b", seed=11, **args)
    make_synthetic_steel(tmp_path / "c", seed=12, **args)
    first, again, other = (_hashes(tmp_path / name) for name in "abc")
    assert len(first) == 1 + 2 * (2 + 2 * len(CLASSES))  # manifest + goods + defect images and masks
    assert first == again
    assert first.keys() == other.keys()
    images = [name for name in first if name.endswith(".png") and "ground_truth" not in name]
    assert all(first[name] != other[name] for name in images)


def test_a_grade_renders_the_same_whatever_else_is_asked_for(dataset: tuple[Path, pd.DataFrame],
                                                             tmp_path: Path) -> None:
    out, _ = dataset
    make_synthetic_steel(tmp_path / "one", seed=5, grades=["pickled"], **SMALL)
    assert _hashes(tmp_path / "one" / "pickled") == _hashes(out / "pickled")


def test_layout_is_mvtec_like_and_matches_the_manifest(dataset: tuple[Path, pd.DataFrame]) -> None:
    out, frame = dataset
    assert sorted(frame["grade"].unique()) == sorted(GRADE_NAMES)
    assert set(frame["defect_class"]) == {"good", *CLASSES}
    for row in frame.itertuples():
        relative = Path(row.image_path).relative_to(out)
        grade, folder, label = relative.parts[:3]
        assert grade == row.grade
        if row.label == "good":
            assert (folder, label, row.mask_kind, row.mask_path) == (row.split, "good", "none", "")
        else:
            assert (folder, label, row.mask_kind) == ("test", row.defect_class, "pixel")
            assert Path(row.mask_path) == out / grade / "ground_truth" / label / f"{relative.stem}_mask.png"
    on_disk = set(out.rglob("*.png"))
    listed = {Path(p) for p in frame["image_path"]} | {Path(p) for p in frame["mask_path"] if p}
    assert on_disk == listed
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_splits_are_deterministic_and_about_60_20_20(dataset: tuple[Path, pd.DataFrame]) -> None:
    _, frame = dataset
    goods = frame[frame["label"] == "good"].groupby(["grade", "split"]).size()
    assert goods.xs("train", level="split").eq(2).all() and goods.xs("test", level="split").eq(1).all()
    defects = frame[frame["label"] == "defect"]
    for _, group in defects.groupby(["grade", "defect_class"]):
        counts = group["split"].value_counts()
        assert (counts.get("train", 0), counts.get("val", 0), counts.get("test", 0)) == defect_split_counts(3)
    assert defect_split_counts(20) == (12, 4, 4)
    assert defect_split_counts(2) == (2, 0, 0)


def test_manifest_round_trip(dataset: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    out, frame = dataset
    again = read_manifest(out / "manifest.csv")
    pd.testing.assert_frame_equal(frame, again)
    assert (frame["source"] == "synthetic_steel").all()
    assert (frame["pair_id"] == "").all()
    copy = tmp_path / "copy.csv"
    write_manifest(frame, copy)
    pd.testing.assert_frame_equal(read_manifest(copy), frame)
    text = (out / "manifest.csv").read_text()
    assert str(out) not in text  # paths are stored relative to the manifest


def test_every_defect_mask_is_non_empty_binary_and_sized_like_its_image(dataset: tuple[Path, pd.DataFrame]) -> None:
    _, frame = dataset
    for row in frame[frame["label"] == "defect"].itertuples():
        image = read_image(row.image_path)
        raw = read_image(row.mask_path)[..., 0]
        assert set(np.unique(raw)) <= {0, 255}
        mask = read_mask(row.mask_path, shape=image.shape[:2])
        assert mask.any(), row.mask_path


def _assert_exact(image: np.ndarray, clean: np.ndarray, mask: np.ndarray, where: str) -> None:
    diff = np.abs(image.astype(int) - clean.astype(int)).max(axis=2)
    assert mask.any(), where
    assert diff[~mask].max(initial=0) <= MASK_THRESHOLD, where
    assert diff[mask].max() > MASK_THRESHOLD, where
    # The mask is the changed pixels, closed by a 3x3 cross: nothing more, nothing less.
    changed = (diff > MASK_THRESHOLD).astype(np.uint8)
    closed = cv2.morphologyEx(changed, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3)))
    np.testing.assert_array_equal(closed.astype(bool), mask, err_msg=where)


@pytest.mark.parametrize(("channels", "size"), [(1, 64), (3, 64), (1, 256)])
def test_mask_is_exactly_the_changed_pixels_for_every_grade_and_class(channels: int, size: int) -> None:
    for grade in GRADE_NAMES:
        for defect_class in CLASSES:
            for index in range(2):
                (sample,) = render_defect(defect_class, size, 3, index, [grade], channels)
                assert sample.image.shape == (size, size, channels) and sample.image.dtype == np.uint8
                _assert_exact(sample.image, sample.clean, sample.mask, f"{grade}/{defect_class}/{index}")


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32), size=st.integers(32, 96), grade=st.sampled_from(GRADE_NAMES),
       defect_class=st.sampled_from(CLASSES), index=st.integers(0, 500))
def test_mask_exactness_holds_for_any_seed_and_size(seed: int, size: int, grade: str, defect_class: str,
                                                     index: int) -> None:
    (sample,) = render_defect(defect_class, size, seed, index, [grade])
    assert sample.mask.shape == (size, size)
    _assert_exact(sample.image, sample.clean, sample.mask, f"{grade}/{defect_class}/{seed}/{size}/{index}")


def test_files_on_disk_are_the_renders_so_the_clean_background_is_known(dataset: tuple[Path, pd.DataFrame]) -> None:
    _, frame = dataset
    for row in frame[(frame["label"] == "defect") & (frame["grade"] == "pickled")].itertuples():
        index = int(Path(row.image_path).stem)
        (sample,) = render_defect(row.defect_class, 64, 5, index, [row.grade])
        image = read_image(row.image_path)
        np.testing.assert_array_equal(image, sample.image)
        np.testing.assert_array_equal(read_mask(row.mask_path), sample.mask)
        _assert_exact(image, sample.clean, read_mask(row.mask_path), row.image_path)
    good = frame[(frame["label"] == "good") & (frame["grade"] == "cold_rolled") & (frame["split"] == "train")]
    np.testing.assert_array_equal(read_image(good["image_path"].iloc[0]), render_good("cold_rolled", 64, 5, 0).image)


def _texture_stats(grade: str) -> dict[str, float]:
    images = [render_good(grade, 128, 0, i).image[..., 0].astype(np.float32) for i in range(4)]
    stats = []
    for image in images:
        low = cv2.GaussianBlur(image, (0, 0), 8)
        fine = image - cv2.GaussianBlur(image, (0, 0), 1.5)
        gx, gy = np.diff(image, axis=1), np.diff(image, axis=0)
        # Local orientation coherence of the structure tensor: 0 isotropic, 1 one direction.
        sx, sy = cv2.Sobel(image, cv2.CV_32F, 1, 0), cv2.Sobel(image, cv2.CV_32F, 0, 1)
        jxx, jyy, jxy = (cv2.GaussianBlur(a, (0, 0), 3) for a in (sx * sx, sy * sy, sx * sy))
        coherence = np.sqrt((jxx - jyy) ** 2 + 4 * jxy**2) / (jxx + jyy + 1e-6)
        stats.append([image.mean(), low.std(), fine.std(), float((gy**2).mean() / (gx**2).mean()), coherence.mean()])
    names = ["mean", "mottle", "grain", "vertical_over_horizontal", "coherence"]
    return dict(zip(names, np.mean(stats, axis=0)))


def test_grades_differ_in_grey_level_mottling_grain_and_direction() -> None:
    stats = {grade: _texture_stats(grade) for grade in GRADE_NAMES}
    means = [stats[g]["mean"] for g in ("hot_rolled", "pickled", "galvanized", "cold_rolled")]
    assert all(b - a > 15 for a, b in itertools.pairwise(means)), means
    # Black mill scale mottles hot-rolled far more than the matte pickled surface.
    assert stats["hot_rolled"]["mottle"] > 2 * stats["pickled"]["mottle"]
    # Pickled has the strongest fine grain of the isotropic grades.
    assert stats["pickled"]["grain"] > 1.3 * stats["hot_rolled"]["grain"]
    # Cold-rolled striations run along rolling (x): grey changes mostly from row to row.
    assert stats["cold_rolled"]["vertical_over_horizontal"] > 3
    for grade in ("hot_rolled", "pickled", "galvanized"):
        assert 0.5 < stats[grade]["vertical_over_horizontal"] < 2, grade
    # Spangle feathers: strongly oriented locally, but each crystal its own way (no global direction).
    assert stats["galvanized"]["coherence"] > 1.4 * max(stats["hot_rolled"]["coherence"], stats["pickled"]["coherence"])
    assert stats["cold_rolled"]["coherence"] > 0.7


def test_paired_instances_share_geometry_across_two_grades(tmp_path: Path) -> None:
    grades = ["cold_rolled", "hot_rolled", "galvanized"]
    frame = make_synthetic_steel(tmp_path / "ds", size=64, per_class=2, good_per_grade=1, paired=True,
                                 grades=grades, classes=["scratches", "pitted_surface"], progress=False)
    defects = frame[frame["label"] == "defect"]
    assert len(defects) == 2 * 3 * 2 * 2 and (defects["pair_id"] != "").all()
    assert (frame.loc[frame["label"] == "good", "pair_id"] == "").all()
    for pair_id, pair in defects.groupby("pair_id"):
        assert len(pair) == 2, pair_id
        owner, defect_class, _ = pair_id.split("/")
        partner = grades[(grades.index(owner) + 1) % len(grades)]
        assert sorted(pair["grade"]) == sorted([owner, partner])
        assert set(pair["defect_class"]) == {defect_class} and pair["split"].nunique() == 1
        first, second = (read_mask(path) for path in pair["mask_path"])
        iou = (first & second).sum() / (first | second).sum()
        assert iou > 0.6, (pair_id, iou)
        images = [read_image(path) for path in pair["image_path"]]
        assert abs(float(images[0].mean()) - float(images[1].mean())) > 10  # different grades underneath


def test_bad_arguments_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DefectGanError, match=r"unknown grade 'stainless'.*known grades: hot_rolled, pickled"):
        make_synthetic_steel(tmp_path / "a", grades=["pickled", "stainless"], progress=False)
    with pytest.raises(DefectGanError, match=r"unknown class 'dent'; known classes: scratches, .*rolled-in_scale"):
        make_synthetic_steel(tmp_path / "b", classes=["dent"], progress=False)
    with pytest.raises(DefectGanError, match="at least two grades"):
        make_synthetic_steel(tmp_path / "c", paired=True, grades=["pickled"], progress=False)
    with pytest.raises(DefectGanError, match="size"):
        make_synthetic_steel(tmp_path / "d", size=8, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_a_held_out_grade_gets_more_test_images_and_everything_else_stays_byte_identical(
        dataset: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    out, base = dataset
    more = make_synthetic_steel(tmp_path / "more", seed=5, held_out=HeldOutGrade("pickled", 5, 4), **SMALL)
    first, bigger = _hashes(out), _hashes(tmp_path / "more")
    assert all(bigger[name] == digest for name, digest in first.items() if name != "manifest.csv")
    pickled, before = more[more["grade"] == "pickled"], base[base["grade"] == "pickled"]
    assert pickled[pickled["label"] == "defect"].groupby("defect_class").size().eq(5).all()
    assert ((pickled["label"] == "good") & (pickled["split"] == "test")).sum() == 4
    assert len(pickled) - len(before) == len(CLASSES) * 2 + 3  # 5 - 3 defects per class, 4 - 1 good test images
    def relative(frame: pd.DataFrame, root: Path) -> pd.DataFrame:
        paths = ["image_path", "mask_path"]
        return frame.assign(**{c: frame[c].str.replace(str(root), "", regex=False) for c in paths}).reset_index(drop=True)

    kept = relative(pickled, tmp_path / "more")
    added = kept[~kept["image_path"].isin(relative(before, out)["image_path"])]
    assert len(added) == len(pickled) - len(before) and (added["split"] == "test").all()
    assert relative(more[more["grade"] != "pickled"], tmp_path / "more").equals(
        relative(base[base["grade"] != "pickled"], out))


def test_a_paired_world_keeps_the_partner_grade_unchanged(tmp_path: Path) -> None:
    args = {**SMALL, "per_class": 1, "good_per_grade": 2, "grades": ["hot_rolled", "pickled"], "paired": True}
    make_synthetic_steel(tmp_path / "a", seed=3, **args)
    frame = make_synthetic_steel(tmp_path / "b", seed=3, held_out=HeldOutGrade("pickled", 2, 1), **args)
    assert _hashes(tmp_path / "a" / "hot_rolled") == _hashes(tmp_path / "b" / "hot_rolled")
    extra = frame[(frame["grade"] == "pickled") & frame["image_path"].str.endswith("001.png")
                  & (frame["label"] == "defect")]
    assert len(extra) == len(CLASSES) and (extra["pair_id"] == "").all()


def test_a_held_out_grade_rejects_fewer_images_and_unknown_grades(tmp_path: Path) -> None:
    with pytest.raises(DefectGanError, match=r"held-out grade 'pickled': 2 defects per class .* every grade's 3"):
        make_synthetic_steel(tmp_path / "a", held_out=HeldOutGrade("pickled", 2, 5), **SMALL)
    with pytest.raises(DefectGanError, match=r"held-out grade 'stainless' is not rendered"):
        make_synthetic_steel(tmp_path / "b", held_out=HeldOutGrade("stainless", 5, 5), **SMALL)
    assert list(tmp_path.iterdir()) == []


def test_anomalib_folder_and_mvtec_read_one_grade(dataset: tuple[Path, pd.DataFrame]) -> None:
    from anomalib.data import Folder
    from anomalib.data.datasets.image.mvtecad import MVTecADDataset

    out, frame = dataset
    grade = "galvanized"
    datamodule = Folder(
        name=f"steel_{grade}",
        root=out / grade,
        normal_dir="train/good",
        abnormal_dir=[f"test/{c}" for c in CLASSES],
        normal_test_dir="test/good",
        mask_dir=[f"ground_truth/{c}" for c in CLASSES],
        train_batch_size=2,
        eval_batch_size=32,
        num_workers=0,
        val_split_mode="none",
    )
    datamodule.setup()
    rows = frame[frame["grade"] == grade]
    assert len(datamodule.train_data) == int(((rows["label"] == "good") & (rows["split"] == "train")).sum())
    assert len(datamodule.test_data) == len(rows) - len(datamodule.train_data)
    batch = next(iter(datamodule.test_dataloader()))
    assert batch.image.shape[1:] == (3, 64, 64)
    masks = {Path(row.image_path).name + row.defect_class: read_mask(row.mask_path)
             for row in rows[rows["label"] == "defect"].itertuples()}
    for path, label, gt_mask in zip(batch.image_path, batch.gt_label, batch.gt_mask):
        key = Path(path).name + Path(path).parent.name
        if bool(label):
            np.testing.assert_array_equal(gt_mask.numpy().astype(bool), masks[key])
        else:
            assert not gt_mask.any()
    assert batch.gt_label.any() and not batch.gt_label.all()

    mvtec = MVTecADDataset(root=out, category=grade, split="test")
    assert len(mvtec) == len(datamodule.test_data)
