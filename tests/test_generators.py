"""Contract tests of the synthetic-defect generators, mirroring anomalib's Perlin generator tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anomalib_defectgan.generators import CutPasteGenerator, DefectBank, DefectBankError
from tests.test_generators_support import make_bank


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> DefectBank:
    return DefectBank(make_bank(tmp_path_factory.mktemp("bank")))


@pytest.mark.parametrize("shape", [(1, 40, 56), (3, 40, 56), (5, 1, 40, 56), (2, 3, 32, 32)])
def test_cutpaste_shapes_dtype_range(bank: DefectBank, shape: tuple[int, ...]) -> None:
    gen = CutPasteGenerator(bank, probability=1.0, seed=0)
    images = torch.rand(shape, dtype=torch.float64)
    augmented, mask = gen(images)
    assert augmented.shape == images.shape and augmented.dtype == images.dtype
    expected_mask = (1, *shape[-2:]) if len(shape) == 3 else (shape[0], 1, *shape[-2:])
    assert mask.shape == expected_mask and mask.dtype == images.dtype
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert augmented.min() >= 0 and augmented.max() <= 1
    batch_mask = mask.reshape(-1, 1, *shape[-2:])
    assert (batch_mask.flatten(1).sum(1) > 0).all(), "probability 1: every image gets a defect"


def test_cutpaste_outside_mask_unchanged_and_inside_changed(bank: DefectBank) -> None:
    gen = CutPasteGenerator(bank, probability=1.0, seed=3)
    images = torch.full((6, 1, 48, 48), 0.35)
    augmented, mask = gen(images)
    outside = mask.expand_as(images) == 0
    assert torch.equal(augmented[outside], images[outside])
    # Donor defects are far from the texture level (40 or 230 on a 140 background): the core changed.
    changed = (augmented - images).abs() > 0.1
    assert changed.any() and (changed <= (mask > 0)).all()


def test_cutpaste_probability_zero_returns_input(bank: DefectBank) -> None:
    gen = CutPasteGenerator(bank, probability=0.0, seed=0)
    images = torch.rand(4, 3, 32, 32)
    augmented, mask = gen(images)
    assert torch.equal(augmented, images) and not mask.any()
    assert gen.last_info == [None] * 4


def test_cutpaste_probability_half_mixes(bank: DefectBank) -> None:
    gen = CutPasteGenerator(bank, probability=0.5, seed=1)
    _, mask = gen(torch.rand(32, 1, 32, 32))
    hit = mask.flatten(1).amax(1)
    assert 4 <= int(hit.sum()) <= 28


def test_cutpaste_seed_determinism(bank: DefectBank) -> None:
    images = torch.rand(4, 3, 40, 40)
    first = CutPasteGenerator(bank, probability=0.7, seed=7)(images)
    second = CutPasteGenerator(bank, probability=0.7, seed=7)(images)
    other = CutPasteGenerator(bank, probability=0.7, seed=8)(images)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert not torch.equal(first[1], other[1])


def test_cutpaste_classes_and_weights(bank: DefectBank) -> None:
    gen = CutPasteGenerator(bank, probability=1.0, classes=["spot"], seed=0)
    gen(torch.rand(8, 1, 48, 48))
    assert {info["defect_class"] for info in gen.last_info} == {"spot"}
    weighted = CutPasteGenerator(bank, probability=1.0, classes=["scratch", "spot"], class_weights=[1, 0], seed=0)
    weighted(torch.rand(8, 1, 48, 48))
    assert {info["defect_class"] for info in weighted.last_info} == {"scratch"}


def test_cutpaste_no_rotation_unless_asked(bank: DefectBank) -> None:
    gen = CutPasteGenerator(bank, probability=1.0, seed=0)
    gen(torch.rand(16, 1, 48, 48))
    assert all(info["rot90"] == 0 for info in gen.last_info)
    rotating = CutPasteGenerator(bank, probability=1.0, seed=0, rotate90=True)
    rotating(torch.rand(16, 1, 48, 48))
    assert any(info["rot90"] != 0 for info in rotating.last_info)


def test_cutpaste_brightness_matched_to_target(bank: DefectBank) -> None:
    """A donor from a 140-grey texture pasted on a dark image keeps the dark level around the defect."""
    gen = CutPasteGenerator(bank, probability=1.0, classes=["spot"], seed=0, blend="none")
    dark = torch.full((1, 1, 48, 48), 0.1)
    augmented, mask = gen(dark)
    defect = augmented[mask.bool()]
    assert defect.mean() > 0.4  # the bright spot (230 vs 140 background) is still bright relative to 0.1
    unmatched = CutPasteGenerator(bank, probability=1.0, classes=["spot"], seed=0, blend="none",
                                  match_brightness=False)(dark)[0]
    assert augmented[mask.bool()].mean() < unmatched[mask.bool()].mean()


def test_bank_errors_name_the_problem(tmp_path: Path) -> None:
    bank = make_bank(tmp_path / "bank", per_class=1)
    with pytest.raises(DefectBankError, match="no usable defects for classes \\['crazing'\\]"):
        DefectBank(bank, classes=["crazing"])
    with pytest.raises(DefectBankError, match="not found"):
        DefectBank(tmp_path / "missing")
    (tmp_path / "nomasks").mkdir()
    (bank / "scratch" / "scratch_0.png").rename(tmp_path / "nomasks" / "a.png")
    with pytest.raises(DefectBankError, match="skipped"):
        DefectBank(tmp_path / "nomasks")


def test_bank_layouts_flat_folder_and_manifest(tmp_path: Path) -> None:
    import pandas as pd

    from anomalib_defectgan.data.manifest import write_manifest

    root = make_bank(tmp_path / "bank", per_class=2)
    flat = DefectBank(root / "spot")
    assert flat.classes == ["spot"] and len(flat) == 2
    rows = [{"image_path": str(p), "mask_path": str(p.parent / "masks" / f"{p.stem}_mask.png"), "label": "defect",
             "defect_class": p.parent.name, "grade": "a", "split": "train", "source": "test"}
            for p in sorted(root.glob("*/*.png"))]
    write_manifest(pd.DataFrame(rows), tmp_path / "manifest.csv")
    from_manifest = DefectBank(tmp_path / "manifest.csv")
    assert from_manifest.classes == ["scratch", "spot"] and len(from_manifest) == 4
    assert from_manifest.digest == DefectBank(root).digest
    window, mask = from_manifest.window(0, 64, channels=1)
    assert window.shape == (1, 64, 64) and mask.shape == (1, 64, 64) and mask.sum() > 0


def test_cutpaste_on_the_procedural_steel_world(tmp_path: Path) -> None:
    from anomalib_defectgan.data import make_synthetic_steel
    from anomalib_defectgan.data.image_io import read_image

    frame = make_synthetic_steel(tmp_path / "steel", size=64, per_class=1, good_per_grade=1, seed=0, progress=False)
    bank = DefectBank(tmp_path / "steel" / "manifest.csv")
    assert len(bank) == (frame.label == "defect").sum() and set(bank.classes) == set(frame.defect_class) - {"good"}
    good = frame[frame.label == "good"].image_path
    images = torch.stack([torch.from_numpy(read_image(p, 1).copy()).permute(2, 0, 1).float() / 255 for p in good])
    augmented, mask = CutPasteGenerator(bank, probability=1.0, seed=0)(images)
    assert (mask.flatten(1).amax(1) == 1).all()
    assert torch.equal(augmented[mask.expand_as(images) == 0], images[mask.expand_as(images) == 0])


@pytest.mark.realdata
def test_bank_from_real_sd_saliency_folder() -> None:
    from tests.conftest import shared_dataset

    images_dir = shared_dataset("sd-saliency-900") / "images"
    bank = DefectBank(images_dir)  # masks are found in the sibling folder ../masks/<stem>.png
    assert len(bank) > 800 and bank.classes == ["images"]
    gen = CutPasteGenerator(bank, probability=1.0, seed=0)
    images = torch.rand(4, 3, 200, 200)
    augmented, mask = gen(images)
    assert (mask.flatten(1).amax(1) == 1).all()
    assert torch.equal(augmented[mask.expand_as(images) == 0], images[mask.expand_as(images) == 0])
    assert all(Path(info["donor_path"]).resolve().parent == images_dir.resolve() for info in gen.last_info)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(channels=st.sampled_from([1, 3]), height=st.integers(4, 80), width=st.integers(4, 80),
       batch=st.integers(1, 3), probability=st.sampled_from([0.0, 0.5, 1.0]), seed=st.integers(0, 10_000),
       blend=st.sampled_from(["feather", "none"]), rotate90=st.booleans())
def test_cutpaste_contract_property(bank: DefectBank, channels: int, height: int, width: int, batch: int,
                                    probability: float, seed: int, blend: str, rotate90: bool) -> None:
    """Any size (also smaller than the donors), any channel count: the contract holds."""
    images = torch.rand(batch, channels, height, width, generator=torch.Generator().manual_seed(seed))
    gen = CutPasteGenerator(bank, probability=probability, seed=seed, blend=blend, rotate90=rotate90)
    augmented, mask = gen(images)
    assert augmented.shape == images.shape and mask.shape == (batch, 1, height, width)
    assert set(mask.unique().tolist()) <= {0.0, 1.0} and augmented.min() >= 0 and augmented.max() <= 1
    outside = mask.expand_as(images) == 0
    assert torch.equal(augmented[outside], images[outside])
    for info, m in zip(gen.last_info, mask, strict=True):
        assert (info is None) == (not m.any())
    if probability == 0.0:
        assert not mask.any()


def test_bank_grade_filter(tmp_path: Path) -> None:
    from anomalib_defectgan.data import make_synthetic_steel

    frame = make_synthetic_steel(tmp_path / "steel", size=64, per_class=1, good_per_grade=1, seed=0,
                                 grades=["hot_rolled", "pickled"], progress=False)
    bank = DefectBank(tmp_path / "steel", grades=["pickled"])
    expected = frame[(frame.label == "defect") & (frame.grade == "pickled") & (frame.mask_kind != "none")]
    assert sorted(d.path for d in bank.donors) == sorted(expected.image_path)
    with pytest.raises(DefectBankError, match="in grades \\['galvanized'\\]"):
        DefectBank(tmp_path / "steel", grades=["galvanized"])
    with pytest.raises(DefectBankError, match="needs a manifest"):
        DefectBank(make_bank(tmp_path / "bank", per_class=1), grades=["pickled"])


def test_overlap_of_disjoint_regions_is_empty() -> None:
    from anomalib_defectgan.generators.placement import Placement, overlap

    (ty, tx), (dy, dx) = overlap(Placement(8, -40), (32, 32), (4, 4))
    assert torch.zeros(4, 4)[ty, tx].numel() == 0 and torch.zeros(32, 32)[dy, dx].numel() == 0
    (ty, tx), (dy, dx) = overlap(Placement(-2, 3), (5, 5), (4, 6))
    assert torch.zeros(4, 6)[ty, tx].shape == torch.zeros(5, 5)[dy, dx].shape == (3, 3)
