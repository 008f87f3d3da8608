"""The painting function (blend_defect), its changed-pixel labels, and the NSA-style copy-paste baseline."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from anomalib_defectgan.generators import CutPasteGenerator, DefectBank
from anomalib_defectgan.generators.blending import BLENDS, CHANGE_THRESHOLD, blend_defect, changed_mask
from tests.test_generators_support import make_bank


def _scene(channels: int = 1, size: tuple[int, int] = (24, 28), seed: int = 0) -> tuple[torch.Tensor, ...]:
    """A textured target, a donor with a bright blob at (8:14, 10:18), and the blob's mask."""
    g = torch.Generator().manual_seed(seed)
    target = 0.4 + 0.1 * torch.rand(channels, *size, generator=g, dtype=torch.float64)
    donor = 0.5 + 0.1 * torch.rand(channels, *size, generator=g, dtype=torch.float64)
    mask = torch.zeros(1, *size, dtype=torch.float64)
    mask[:, 8:14, 10:18] = 1
    donor[:, 8:14, 10:18] = 0.95
    return target, donor, mask


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> DefectBank:
    return DefectBank(make_bank(tmp_path_factory.mktemp("bank")))


def test_threshold_is_two_grey_levels_and_blends_listed() -> None:
    from anomalib_defectgan.data import blending as data_blending

    assert CHANGE_THRESHOLD == 2.0 / 255.0 == data_blending.CHANGE_THRESHOLD
    assert BLENDS == ("none", "feather", "poisson", "poisson_mixed")


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("blend", BLENDS)
def test_result_equals_target_outside_mask_and_changed_inside(channels: int, blend: str) -> None:
    target, donor, mask = _scene(channels)
    result = blend_defect(target, donor, mask, blend)
    assert result.shape == target.shape and result.dtype == target.dtype
    assert result.min() >= 0 and result.max() <= 1
    label = changed_mask(result, target)
    assert label.shape == (1, *target.shape[-2:]) and set(label.unique().tolist()) == {0.0, 1.0}
    outside = label.expand_as(target) == 0
    assert torch.equal(result[outside], target[outside]), "bit for bit outside the returned mask"
    change = (result - target).abs().mean(dim=0, keepdim=True)
    assert (change[label > 0] >= CHANGE_THRESHOLD).all(), "every labelled pixel really changed"
    assert torch.equal(label, (change >= CHANGE_THRESHOLD).to(label.dtype)), "mask == changed pixels"
    assert label[:, 9:13, 11:17].all(), "the defect's core is labelled"


@pytest.mark.parametrize("blend", ["poisson", "poisson_mixed"])
def test_poisson_is_local_and_seamless(blend: str) -> None:
    """Poisson changes the defect's neighbourhood only and follows the target's level, not the donor's."""
    target, donor, mask = _scene()
    result = blend_defect(target, donor, mask, blend)
    label = changed_mask(result, target)
    assert not label[:, :2].any() and not label[:, -2:].any(), "nothing changes far from the defect"
    assert (label.sum() > mask.sum() * 0.9) and label.sum() < target.shape[-1] * target.shape[-2] / 2
    # The donor's blob is ~0.4 above the donor's background: the Poisson core keeps that contrast
    # to the target's level around it.
    core = (slice(None), slice(9, 13), slice(11, 17))
    assert (result[core] - target[core]).mean() > 0.3


def test_poisson_mask_touching_the_crop_border() -> None:
    """Defects at (and cut by) the crop border: the reflect-padded fallback still blends them."""
    target, donor, _ = _scene(size=(16, 20))
    for rows, cols in [(slice(0, 5), slice(0, 6)), (slice(12, 16), slice(15, 20)), (slice(0, 16), slice(9, 11))]:
        mask = torch.zeros(1, 16, 20, dtype=torch.float64)
        mask[:, rows, cols] = 1
        bright = donor.clone()
        bright[:, rows, cols] = 0.95
        for blend in ("poisson", "poisson_mixed"):
            result = blend_defect(target, bright, mask, blend)
            label = changed_mask(result, target)
            assert label.any() and label[:, rows, cols].mean() > 0.8, (rows, cols, blend)
            assert torch.equal(result[label.expand_as(result) == 0], target[label.expand_as(result) == 0])


def test_tiny_crop_and_single_pixel_defect() -> None:
    target = torch.full((1, 2, 3), 0.2)
    donor = torch.full((1, 2, 3), 0.2)
    donor[0, 1, 2] = 0.9
    mask = torch.zeros(1, 2, 3)
    mask[0, 1, 2] = 1
    for blend in BLENDS:
        result = blend_defect(target, donor, mask, blend)
        assert result.shape == (1, 2, 3) and changed_mask(result, target)[0, 1, 2] == 1, blend


def test_feather_halo_and_brightness_match() -> None:
    target, donor, mask = _scene()
    hard = changed_mask(blend_defect(target, donor, mask, "none"), target)
    soft = changed_mask(blend_defect(target, donor, mask, "feather", feather=2.0), target)
    assert hard.sum() <= mask.sum() and soft.sum() > mask.sum(), "the halo reaches beyond the defect"
    matched = blend_defect(target, donor, mask, "none")
    raw = blend_defect(target, donor, mask, "none", match_brightness=False)
    assert matched[mask.bool()].mean() < raw[mask.bool()].mean(), "donor background 0.55 shifted to 0.45"


def test_bad_input_is_named() -> None:
    target, donor, mask = _scene()
    with pytest.raises(ValueError, match="mask is empty"):
        blend_defect(target, donor, torch.zeros_like(mask), "poisson")
    with pytest.raises(ValueError, match="same shape"):
        blend_defect(target, donor[:, :-1], mask, "feather")
    with pytest.raises(ValueError, match="mask must be"):
        blend_defect(target, donor, mask[:, :-1], "none")
    with pytest.raises(ValueError, match="poisson_mixed"):
        blend_defect(target, donor, mask, "seamless")
    with pytest.raises(ValueError, match="1 or 3 channels"):
        blend_defect(target.expand(2, -1, -1), donor.expand(2, -1, -1), mask, "poisson")
    with pytest.raises(ValueError, match="blend must be one of"):
        CutPasteGenerator(Path("/nonexistent/bank"), blend="seamless")  # checked before the bank is read
    with pytest.raises(ValueError, match="scale_jitter"):
        CutPasteGenerator(Path("/nonexistent/bank"), scale_jitter=(1.3, 0.7))


def test_nsa_generator_deterministic_and_labels_match_pixels(bank: DefectBank) -> None:
    images = torch.rand(6, 1, 40, 44, generator=torch.Generator().manual_seed(0))
    gen = CutPasteGenerator(bank, probability=1.0, blend="poisson", scale_jitter=(0.7, 1.3), seed=0)
    augmented, mask = gen(images)
    again = CutPasteGenerator(bank, probability=1.0, blend="poisson", scale_jitter=(0.7, 1.3), seed=0)(images)
    assert torch.equal(augmented, again[0]) and torch.equal(mask, again[1])
    for image, out, m in zip(images, augmented, mask, strict=True):
        assert m.any()
        assert torch.equal(m, changed_mask(out, image)), "mask == the pixels that changed"
        assert torch.equal(out[m.expand_as(out) == 0], image[m.expand_as(out) == 0])
    scales = [info["scale"] for info in gen.last_info]
    assert all(0.7 <= s <= 1.3 for s in scales) and len(set(scales)) > 1
    plain = CutPasteGenerator(bank, probability=1.0, seed=0)
    plain(images)
    assert [info["scale"] for info in plain.last_info] == [1.0] * 6


def test_scale_jitter_resizes_the_defect(bank: DefectBank) -> None:
    """A spot pasted at scale ~1.3 covers more pixels than at scale ~0.7 (same donor, hard edge)."""
    image = torch.full((1, 1, 64, 64), 0.3)
    areas = {}
    for low, high in [(0.7, 0.7), (1.3, 1.3)]:
        gen = CutPasteGenerator(bank, probability=1.0, classes=["spot"], blend="none", scale_jitter=(low, high),
                                seed=0)
        _, mask = gen(image)
        assert gen.last_info[0]["scale"] == pytest.approx(low)
        areas[low] = float(mask.sum())
    assert areas[1.3] > 2 * areas[0.7] > 0


def test_cutpaste_mask_is_changed_pixels_for_every_blend(bank: DefectBank) -> None:
    images = torch.rand(3, 3, 36, 36, generator=torch.Generator().manual_seed(1))
    for blend in BLENDS:
        augmented, mask = CutPasteGenerator(bank, probability=1.0, blend=blend, seed=2)(images)
        assert torch.equal(mask, changed_mask(augmented, images)), blend
        assert (mask.flatten(1).amax(1) == 1).all(), blend


def test_nsa_arm_manifest(tmp_path: Path) -> None:
    from anomalib_defectgan.benchmark.new_grade_protocol import ARMS, arm_manifest, new_grade_split
    from anomalib_defectgan.data.manifest import read_manifest, write_manifest
    from anomalib_defectgan.generators.factory import build_generator
    from tests.helpers import write_blob_dataset

    assert ARMS == ("none", "perlin", "cutpaste", "nsa", "defectgan")
    frame = read_manifest(write_blob_dataset(tmp_path / "d", size=32, per_class=4, goods=6))
    frame.loc[(frame["label"] == "good") & (frame.index % 3 == 0), "split"] = "test"
    split = new_grade_split(frame, "dark", seed=1)
    nsa, cut = arm_manifest(split, "nsa"), arm_manifest(split, "cutpaste")
    assert nsa.equals(cut), "nsa trains, validates and tests on the cutpaste arm's rows"
    assert (nsa[nsa["split"] == "train"]["label"] == "good").all()
    donors = write_manifest(split.donors, tmp_path / "donors" / "manifest.csv")
    gen = build_generator("nsa", donors, seed=0)
    assert isinstance(gen, CutPasteGenerator) and gen.blend == "poisson" and gen.scale_jitter == (0.7, 1.3)


def test_adaptive_change_removes_the_new_grain_only_where_the_donor_lost_its_own() -> None:
    from anomalib_defectgan.data.blending import blur, paste_change, texture_kept

    torch.manual_seed(0)

    def grain() -> torch.Tensor:
        return (torch.rand(1, 1, 48, 48) - 0.5) * 0.2

    target = 0.5 + grain()
    mask = torch.zeros(1, 1, 48, 48)
    mask[..., 14:34, 14:34] = 1.0
    flat_patch = 0.5 + grain()
    flat_patch[..., 12:36, 12:36] = 0.7  # a patch that replaced the donor's grain
    residual, _ = paste_change(target, flat_patch, mask)
    adaptive, alpha = paste_change(target, flat_patch, mask, replace_texture=True)
    kept = texture_kept(flat_patch, alpha)
    assert kept[..., 20:28, 20:28].max() < 0.2 and kept[..., :6, :6].min() > 0.5
    inner = (slice(None), slice(None), slice(18, 30), slice(18, 30))

    def detail(image: torch.Tensor) -> torch.Tensor:
        return (image - blur(image, 1.0))[inner].std()

    assert detail(adaptive) < 0.3 * detail(residual), "the new grain no longer runs through a flat patch"
    assert torch.equal(adaptive[alpha == 0], target[alpha == 0]), "nothing changes outside the blend"

    scratch = 0.5 + grain()
    scratch[..., 23:25, 8:40] -= 0.3  # a thin groove in the donor's own grain
    line = torch.zeros_like(mask)
    line[..., 22:26, 8:40] = 1.0
    assert torch.allclose(paste_change(target, scratch, line, replace_texture=True)[0],
                          paste_change(target, scratch, line)[0], atol=0.02), "thin defects keep the residual"


def test_matched_change_scales_darkening_by_the_material_and_leaves_the_donor_grain() -> None:
    from anomalib_defectgan.data.blending import LEVEL_GAIN_LIMIT, blur, paste_change

    torch.manual_seed(0)
    size = (1, 1, 48, 48)
    mask = torch.zeros(size)
    mask[..., 16:32, 16:32] = 1.0
    dark_grade, bright_grade = torch.full(size, 0.2), torch.full(size, 0.6)  # grain-free materials
    absorbing = dark_grade.clone()
    absorbing[..., 20:28, 20:28] *= 0.5  # a defect that takes half the light away
    residual, alpha = paste_change(bright_grade, absorbing, mask)
    matched, _ = paste_change(bright_grade, absorbing, mask, match_material=True)
    centre = (slice(None), slice(None), slice(22, 26), slice(22, 26))
    assert torch.allclose(residual[centre], torch.full((1, 1, 4, 4), 0.5), atol=1e-4), "residual: -0.1 as on the donor"
    assert torch.allclose(matched[centre], torch.full((1, 1, 4, 4), 0.6 - 0.1 * LEVEL_GAIN_LIMIT), atol=1e-3), \
        "three times the donor's grey level: the darkening grows by the clipped ratio"
    assert torch.equal(matched[alpha == 0], bright_grade[alpha == 0]), "nothing changes outside the blend"
    back, _ = paste_change(dark_grade, absorbing, mask, match_material=True)
    assert torch.allclose(back[centre], absorbing[centre], atol=1e-3), "on its own material the defect is unchanged"

    lit = dark_grade.clone()
    lit[..., 23:25, 18:30] = 0.7  # bare metal: brightening is added as it is
    matched_lit, _ = paste_change(bright_grade, lit, mask, match_material=True)
    assert torch.allclose(matched_lit[..., 23:25, 20:28], torch.full((1, 1, 2, 8), 1.0), atol=1e-4)

    grainy = 0.4 + (torch.rand(size) - 0.5) * 0.2  # a clean donor with coarse grain
    grainy_target = bright_grade + (torch.rand(size) - 0.5) * 0.04
    carried, _ = paste_change(grainy_target, grainy, mask)
    matched_grain, _ = paste_change(grainy_target, grainy, mask, match_material=True)
    inner = (slice(None), slice(None), slice(20, 28), slice(20, 28))

    def detail(image: torch.Tensor) -> torch.Tensor:
        return (image - blur(image, 1.0))[inner].std()

    assert detail(matched_grain) < 0.5 * detail(carried), "the donor's own grain is not painted over the target's"
    assert detail(matched_grain) > 0.5 * detail(grainy_target), "the target's grain shows through"

