"""DefectTransferGenerator: the Perlin contract, crop-local synthesis, the code cache, OpenVINO parity."""

from __future__ import annotations

import functools
import json
import logging
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from anomalib_defectgan.cli import main as cli
from anomalib_defectgan.errors import DefectGanError
from anomalib_defectgan.generators import DefectBankError, DefectTransferGenerator
from tests.test_generators_support import make_bank, make_tiny_generator


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("transfer")
    return {"gen": make_tiny_generator(root / "gen"), "bank": make_bank(root / "bank"), "cache": root / "cache",
            "root": root}


@pytest.fixture(scope="module")
def gen(world: dict[str, Path]) -> DefectTransferGenerator:
    return DefectTransferGenerator(world["gen"], world["bank"], probability=1.0, seed=0, cache_dir=world["cache"])


@pytest.mark.parametrize("shape", [(1, 40, 56), (3, 40, 56), (3, 1, 64, 48), (2, 3, 20, 24), (2, 1, 96, 96)])
def test_transfer_contract_shapes_range_dtype(gen: DefectTransferGenerator, shape: tuple[int, ...]) -> None:
    images = torch.rand(shape, dtype=torch.float64)
    augmented, mask = gen(images)
    assert augmented.shape == images.shape and augmented.dtype == images.dtype
    expected = (1, *shape[-2:]) if len(shape) == 3 else (shape[0], 1, *shape[-2:])
    assert mask.shape == expected and mask.dtype == images.dtype
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert augmented.min() >= 0 and augmented.max() <= 1
    assert (mask.reshape(-1, *shape[-2:]).flatten(1).amax(1) == 1).all(), "probability 1: every image painted"
    outside = mask.expand_as(augmented) == 0 if len(shape) == 4 else (mask == 0).expand_as(augmented)
    assert torch.equal(augmented[outside], images[outside]), "outside the mask nothing changes"
    assert not torch.equal(augmented, images)


def test_transfer_is_crop_local(gen: DefectTransferGenerator) -> None:
    images = torch.rand(3, 1, 128, 160)
    _, mask = gen(images)
    for m in mask[:, 0]:
        rows, cols = torch.nonzero(m.any(1)).flatten(), torch.nonzero(m.any(0)).flatten()
        assert rows[-1] - rows[0] < gen.crop_size and cols[-1] - cols[0] < gen.crop_size
    assert all(info["window"] == 32 for info in gen.last_info)


def test_transfer_windows_reach_the_edges_only_within_the_margin(world: dict[str, Path]) -> None:
    images = torch.rand(24, 1, 48, 48)
    edges = DefectTransferGenerator(world["gen"], world["bank"], probability=1.0, seed=2, cache_dir=world["cache"],
                                    placement="window", edge_margin=None)
    assert edges.edge_margin == 8, "None: a quarter of the crop"
    _, mask = edges(images)
    tops = [info["top"] for info in edges.last_info] + [info["left"] for info in edges.last_info]
    assert min(tops) < 0 and min(tops) >= -8 and max(tops) <= 48 - 32 + 8
    assert mask[:, :, 0, :].any() or mask[:, :, :, 0].any()
    inside = DefectTransferGenerator(world["gen"], world["bank"], probability=1.0, seed=2, cache_dir=world["cache"],
                                     placement="window")
    assert inside.edge_margin == 0, "the default keeps windows inside"
    inside(images)
    tops = [info["top"] for info in inside.last_info] + [info["left"] for info in inside.last_info]
    assert min(tops) >= 0 and max(tops) <= 48 - 32


def _centroids(mask: torch.Tensor) -> torch.Tensor:
    """``[B, 2]`` row and column centroid of each mask ``[B, 1, H, W]``."""
    rows = torch.arange(mask.shape[-2], dtype=mask.dtype)[:, None].expand(mask.shape[-2:])
    cols = torch.arange(mask.shape[-1], dtype=mask.dtype)[None, :].expand(mask.shape[-2:])
    area = mask.flatten(1).sum(1)
    return torch.stack([(mask[:, 0] * rows).flatten(1).sum(1) / area, (mask[:, 0] * cols).flatten(1).sum(1) / area], 1)


def test_defect_placement_lands_defects_anywhere_even_with_a_window_as_large_as_the_image(
        world: dict[str, Path]) -> None:
    images = torch.rand(32, 1, 32, 32)
    central = DefectTransferGenerator(world["gen"], world["bank"], probability=1.0, seed=3, cache_dir=world["cache"],
                                      placement="window")
    spread = DefectTransferGenerator(world["gen"], world["bank"], probability=1.0, seed=3, cache_dir=world["cache"])
    assert spread.placement == "defect", "the default"
    window_centres = _centroids(central(images)[1])
    _, mask = spread(images)
    defect_centres = _centroids(mask)
    assert (window_centres.amax(0) - window_centres.amin(0)).max() < 8, "window placement: every defect mid-image"
    assert ((defect_centres.amax(0) - defect_centres.amin(0)) > 16).all(), "defect placement: anywhere"
    assert (mask.flatten(1).sum(1) > 0).all(), "every defect lands in the image"
    assert not torch.equal(*(g(images)[0] for g in (central, spread)))
    with pytest.raises(ValueError, match="placement must be one of"):
        DefectTransferGenerator(world["gen"], world["bank"], cache_dir=world["cache"], placement="centre")


def test_transfer_probability_and_seed(world: dict[str, Path]) -> None:
    images = torch.rand(6, 1, 48, 48)
    none = DefectTransferGenerator(world["gen"], world["bank"], probability=0.0, seed=0, cache_dir=world["cache"])
    augmented, mask = none(images)
    assert torch.equal(augmented, images) and not mask.any() and none.last_info == [None] * 6
    first = DefectTransferGenerator(world["gen"], world["bank"], probability=0.6, seed=3, cache_dir=world["cache"])
    second = DefectTransferGenerator(world["gen"], world["bank"], probability=0.6, seed=3, cache_dir=world["cache"])
    a, b = first(images), second(images)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert first.last_info == second.last_info
    first.reseed(4)
    assert not torch.equal(first(images)[0], a[0]), "another seed, other defects"


def test_transfer_classes_and_no_rotation(world: dict[str, Path]) -> None:
    only = DefectTransferGenerator(world["gen"], world["bank"], probability=1.0, classes=["scratch"], seed=0,
                                   cache_dir=world["cache"])
    only(torch.rand(8, 1, 32, 32))
    infos = [i for i in only.last_info if i is not None]
    assert infos and {i["defect_class"] for i in infos} == {"scratch"}
    assert all(i["rot90"] == 0 for i in infos)


def test_donor_codes_cached_by_checkpoint_and_bank(world: dict[str, Path], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = DefectTransferGenerator(world["gen"], world["bank"], seed=0, cache_dir=cache)
    files = list(cache.glob("donor-codes-*.safetensors"))
    assert len(files) == 1 and first.cache_key() in files[0].name
    from safetensors.torch import load_file, save_file

    # A second generator reads the cache instead of encoding: prove it by planting marked codes.
    planted = {k: (v * 0 + 7 if k == "z_d" else v) for k, v in load_file(str(files[0])).items()}
    save_file(planted, str(files[0]))
    second = DefectTransferGenerator(world["gen"], world["bank"], seed=0, cache_dir=cache)
    assert torch.equal(second.codes["z_d"], planted["z_d"])
    other_bank = make_bank(tmp_path / "bank2", seed=5)
    third = DefectTransferGenerator(world["gen"], other_bank, seed=0, cache_dir=cache)
    assert third.cache_key() != first.cache_key() and len(list(cache.glob("donor-codes-*"))) == 2
    other_gen = make_tiny_generator(tmp_path / "gen2", seed=1)
    assert DefectTransferGenerator(other_gen, world["bank"], cache_dir=cache).cache_key() != first.cache_key()


def test_transfer_bad_input(world: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(DefectGanError, match="not found"):
        DefectTransferGenerator(world["bank"], world["bank"], cache_dir=world["cache"])
    (tmp_path / "generator.json").write_text(json.dumps({"kind": "something-else"}))
    (tmp_path / "generator.safetensors").write_bytes(b"x")
    with pytest.raises(DefectGanError, match="not a DefectGan generator"):
        DefectTransferGenerator(tmp_path, world["bank"], cache_dir=world["cache"])
    other = make_bank(tmp_path / "bank", per_class=1)
    (other / "scratch").rename(other / "crazing")
    (other / "spot").rename(other / "pitting")
    with pytest.raises(DefectBankError, match="the generator knows \\['scratch', 'spot'\\]"):
        DefectTransferGenerator(world["gen"], other, cache_dir=world["cache"])


def test_openvino_export_matches_pytorch(world: dict[str, Path], gen: DefectTransferGenerator) -> None:
    from anomalib_defectgan.generators.openvino_backend import OpenVinoTransfer
    from anomalib_defectgan.models.defect_gan.torch_model import DefectCodes

    out = world["root"] / "ir"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cli(["export", "--checkpoint", str(world["gen"]), "--out", str(out)]) == 0
    jit = [str(w.message) for w in caught if issubclass(w.category, FutureWarning | DeprecationWarning)
           and "jit" in str(w.message)]
    assert not jit, f"the export went through the deprecated torch.jit: {jit}"
    meta = json.loads((out / "transfer.json").read_text())
    assert meta["precision"] == "FP32" and meta["crop_size"] == 32
    ov_transfer = OpenVinoTransfer(out / "transfer.xml")
    # The raw graph: random canvases and real donor codes, batch 5 (the IR has a dynamic batch).
    torch.manual_seed(0)
    canvas = torch.rand(5, 1, 32, 32)
    donor, orient = torch.tensor([0, 1, 2, 3, 4]), torch.tensor([0, 1, 2, 3, 0])
    z_d, coarse_mask_logits, s_d = (gen.codes[k][donor, orient] for k in ("z_d", "coarse_mask_logits", "s_d"))
    class_id = gen.codes["class_id"][donor]
    grade_id = gen.gan.grade_ids(None, 5, torch.device("cpu"))
    ov_image, ov_mask = ov_transfer(canvas, z_d, coarse_mask_logits, s_d, class_id, grade_id)
    pt_image, pt_mask = gen.gan.transfer(canvas, DefectCodes(z_d, coarse_mask_logits, s_d, torch.zeros(5, 0), class_id), class_id)
    assert (ov_image - pt_image).abs().max() < 1e-3 and (ov_mask - pt_mask).abs().max() < 1e-3
    # The whole generator with backend="openvino": same defects, same places.
    ov_gen = DefectTransferGenerator(world["gen"], world["bank"], probability=1.0, seed=11, cache_dir=world["cache"],
                                     backend="openvino", openvino_model=out / "transfer.xml")
    gen.reseed(11)
    images = torch.rand(4, 3, 48, 48)
    (a, m), (b, n) = gen(images), ov_gen(images)
    assert gen.last_info == ov_gen.last_info
    agree = (m == n).expand_as(a)
    assert agree.float().mean() > 0.99 and (a - b)[agree].abs().max() < 1e-3
    assert cli(["export", "--checkpoint", str(world["gen"]), "--out", str(world["root"] / "ir16"), "--fp16"]) == 0
    fp16 = OpenVinoTransfer(world["root"] / "ir16")
    assert (fp16(canvas, z_d, coarse_mask_logits, s_d, class_id, grade_id)[0] - pt_image).abs().max() < 2e-2


@settings(max_examples=15, deadline=None)
@given(channels=st.sampled_from([1, 3]), height=st.integers(4, 70), width=st.integers(4, 70),
       batch=st.integers(1, 3), probability=st.sampled_from([0.0, 0.5, 1.0]), seed=st.integers(0, 10_000))
def test_transfer_contract_property(gen: DefectTransferGenerator, channels: int, height: int, width: int,
                                    batch: int, probability: float, seed: int) -> None:
    """Any image size (smaller than the window, not a multiple of 8) and channel count."""
    images = torch.rand(batch, channels, height, width, generator=torch.Generator().manual_seed(seed))
    gen.probability = probability
    gen.reseed(seed)
    try:
        augmented, mask = gen(images)
    finally:
        gen.probability = 1.0
    assert augmented.shape == images.shape and mask.shape == (batch, 1, height, width)
    assert set(mask.unique().tolist()) <= {0.0, 1.0} and augmented.min() >= 0 and augmented.max() <= 1
    outside = mask.expand_as(images) == 0
    assert torch.equal(augmented[outside], images[outside])
    for info, m in zip(gen.last_info, mask, strict=True):
        assert (info is None) == (not m.any())


def test_transfer_empty_gan_mask_leaves_the_image_alone(world: dict[str, Path]) -> None:
    """A GAN mask that never reaches the threshold: after the redraws, nothing is painted or claimed."""
    never = DefectTransferGenerator(world["gen"], world["bank"], probability=1.0, seed=0, mask_threshold=1.01,
                                    mask_source="gan",
                                    cache_dir=world["cache"])
    images = torch.rand(3, 1, 40, 40)
    augmented, mask = never(images)
    assert torch.equal(augmented, images) and not mask.any() and never.last_info == [None] * 3


@pytest.mark.parametrize("dilation", [0, 2])
def test_donor_mask_source_paints_exactly_the_donors_label(world: dict[str, Path], dilation: int) -> None:
    from anomalib_defectgan.generators.placement import Placement

    gen = DefectTransferGenerator(world["gen"], world["bank"], probability=1.0, seed=3, cache_dir=world["cache"],
                                  mask_source="donor", mask_dilation=dilation, edge_margin=0,
                                  min_change=0.0)  # the region rule alone; labels = changed pixels below
    images = torch.rand(6, 1, 80, 80)
    augmented, mask = gen(images)
    paths = [donor.path for donor in gen.bank.donors]
    size = gen.crop_size
    for i, info in enumerate(gen.last_info):
        _, label = gen.bank.window(paths.index(info["donor_path"]), size, 1)
        expected = Placement(0, 0, info["flip_h"], info["flip_v"], info["rot90"]).orient(label)[None] >= 0.5
        if dilation:
            expected = torch.nn.functional.max_pool2d(expected.float(), 2 * dilation + 1, 1, dilation) > 0.5
        window = (slice(info["top"], info["top"] + size), slice(info["left"], info["left"] + size))
        assert torch.equal(mask[i, 0][window].bool(), expected[0, 0])
        assert mask[i].sum() == mask[i, 0][window].sum(), "nothing outside the window"
    assert torch.equal(augmented[mask.expand_as(augmented) == 0], images[mask.expand_as(images) == 0])


def test_default_mask_is_exactly_the_changed_pixels(world: dict[str, Path]) -> None:
    from anomalib_defectgan.data.blending import CHANGE_THRESHOLD

    gen = DefectTransferGenerator(world["gen"], world["bank"], probability=1.0, seed=3, cache_dir=world["cache"])
    images = torch.rand(6, 1, 80, 80)
    augmented, mask = gen(images)
    changed = (augmented - images).abs().mean(dim=1, keepdim=True) >= CHANGE_THRESHOLD
    assert torch.equal(mask.bool(), changed)
    assert torch.equal(augmented[~changed.expand_as(augmented)], images[~changed.expand_as(images)])


def test_mask_source_is_checked(world: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="mask_source"):
        DefectTransferGenerator(world["gen"], world["bank"], mask_source="union", cache_dir=world["cache"])
    with pytest.raises(ValueError, match="mask_dilation"):
        DefectTransferGenerator(world["gen"], world["bank"], mask_source="donor", mask_dilation=-1,
                                cache_dir=world["cache"])


def test_min_change_leaves_unrendered_pixels_unlabelled(world: dict[str, Path]) -> None:
    images = torch.rand(6, 1, 80, 80)
    full = DefectTransferGenerator(world["gen"], world["bank"], probability=1.0, seed=5, cache_dir=world["cache"],
                                   edge_margin=0)
    strict = DefectTransferGenerator(world["gen"], world["bank"], probability=1.0, seed=5, cache_dir=world["cache"],
                                     edge_margin=0, min_change=0.05)
    _, full_mask = full(images)
    augmented, mask = strict(images)
    change = (augmented - images).abs().mean(dim=1, keepdim=True)
    assert (change[mask.bool()] >= 0.05).all(), "every labelled pixel visibly changed"
    assert torch.equal(augmented[mask.expand_as(augmented) == 0], images[mask.expand_as(images) == 0])
    assert (mask <= full_mask).all() and mask.sum() < full_mask.sum(), "the label shrinks to what was rendered"
    with pytest.raises(ValueError, match="min_change"):
        DefectTransferGenerator(world["gen"], world["bank"], min_change=1.0, cache_dir=world["cache"])


def test_composite_generator_pastes_real_donor_pixels_and_labels_what_changed(world: dict[str, Path]) -> None:
    from anomalib_defectgan.data.blending import CHANGE_THRESHOLD

    path = make_tiny_generator(world["root"] / "gen_composite", defect_path="composite")
    gen = DefectTransferGenerator(path, world["bank"], probability=1.0, seed=4, cache_dir=world["cache"])
    images = torch.rand(6, 1, 80, 80) * 0.1 + 0.45  # flat canvases: the donors' defects stand out
    augmented, mask = gen(images)
    changed = (augmented - images).abs().mean(dim=1, keepdim=True) >= CHANGE_THRESHOLD
    assert torch.equal(mask.bool(), changed) and mask.flatten(1).sum(1).min() > 0
    for i, info in enumerate(gen.last_info):
        window = (slice(None), slice(max(info["top"], 0), info["top"] + gen.crop_size),
                  slice(max(info["left"], 0), info["left"] + gen.crop_size))
        assert mask[i][window].sum() == mask[i].sum(), "nothing painted outside the window (it may stick out)"
        dark = info["defect_class"] == "scratch"  # the bank's scratches are dark, its spots bright
        inside = mask[i].bool().expand_as(augmented[i])
        shift = (augmented[i][inside] - images[i][inside]).mean()
        assert (shift < 0) if dark else (shift > 0), "the donor's real defect was pasted"
    ov_gen = DefectTransferGenerator(path, world["bank"], probability=1.0, seed=4, cache_dir=world["cache"],
                                     backend="openvino")
    ov_augmented, ov_mask = ov_gen(images)
    assert (ov_augmented - augmented).abs().max() < 1e-3 and (ov_mask != mask).float().mean() < 1e-3


def test_residual_generator_adds_the_donor_defect_to_the_new_material(world: dict[str, Path]) -> None:
    from anomalib_defectgan.data.blending import paste_change

    path = make_tiny_generator(world["root"] / "gen_residual", defect_path="composite", composite_mode="residual")
    gen = DefectTransferGenerator(path, world["bank"], probability=1.0, seed=4, cache_dir=world["cache"],
                                  placement="window", edge_margin=0)  # the window is the image: same pixels
    images = torch.rand(4, 1, 32, 32) * 0.1 + 0.45  # textured canvases
    donors = [0, 1, 4, 5]
    augmented, mask = gen.paint_donors(images, donors)
    assert mask.flatten(1).sum(1).min() > 0
    for i, info in enumerate(gen.last_info):  # an untrained G returns the composite
        orient = next(k for k, o in enumerate(gen.orientations)
                      if (o.flip_h, o.flip_v) == (info["flip_h"], info["flip_v"]))
        donor, donor_mask = gen.donor_pixels(torch.tensor([donors[i]]), torch.tensor([orient]))
        expected, _ = paste_change(images[i:i + 1], donor, donor_mask, gen.gan.net.composite_feather)
        keep = mask[i:i + 1].bool()
        assert torch.allclose(augmented[i:i + 1][keep], expected[keep], atol=1e-5)
        inside = donor_mask.bool() & keep
        texture = augmented[i:i + 1][inside] - images[i:i + 1][inside]
        assert texture.std() < (augmented[i:i + 1][inside]).std(), "the canvas texture shows through the defect"
    ov_gen = DefectTransferGenerator(path, world["bank"], probability=1.0, seed=4, cache_dir=world["cache"],
                                     placement="window", edge_margin=0, backend="openvino")
    ov_augmented, _ = ov_gen.paint_donors(images, donors)
    assert (ov_augmented - augmented).abs().max() < 1e-3


def test_a_larger_window_paints_donors_larger_than_the_training_crop_whole(world: dict[str, Path]) -> None:
    path = make_tiny_generator(world["root"] / "gen_window", defect_path="composite", composite_mode="residual")
    small = DefectTransferGenerator(path, world["bank"], probability=1.0, seed=1, cache_dir=world["cache"])
    large = DefectTransferGenerator(path, world["bank"], probability=1.0, seed=1, cache_dir=world["cache"], window=64)
    assert small.crop_size == 32 and large.crop_size == 64 and small.donors_cut > 0 and large.donors_cut == 0
    big = max(range(len(large.bank)), key=lambda i: max(large.bank.donors[i].extent))
    assert max(large.bank.donors[big].extent) > 32
    images = torch.rand(2, 1, 80, 80) * 0.1 + 0.45
    extents = []
    for gen in (small, large):
        _, mask = gen.paint_donors(images, [big, big])
        rows = torch.nonzero(mask[0, 0].any(1)).flatten()
        cols = torch.nonzero(mask[0, 0].any(0)).flatten()
        extents.append(max(int(rows[-1] - rows[0]), int(cols[-1] - cols[0])) + 1)
        assert all(info["window"] == gen.crop_size for info in gen.last_info)
    assert extents[0] <= 32 < extents[1], "the 32 px window cuts the donor, the 64 px one paints it whole"
    large.reseed(1)
    painted, _ = large.paint_donors(images, [big, big])
    ov_large = DefectTransferGenerator(path, world["bank"], probability=1.0, seed=1, cache_dir=world["cache"],
                                       window=64, backend="openvino")
    ov_painted, _ = ov_large.paint_donors(images, [big, big])
    assert (ov_painted - painted).abs().max() < 1e-3, "the OpenVINO graph is converted for the 64 px window"
    with pytest.raises(ValueError, match="multiple of the GAN's code stride"):
        DefectTransferGenerator(path, world["bank"], window=60, cache_dir=world["cache"])
    with pytest.raises(ValueError, match="exported for"):
        DefectTransferGenerator(path, world["bank"], window=64, backend="openvino", openvino_model="transfer.xml",
                                cache_dir=world["cache"])


def test_critic_redraws_reject_transfers_the_critic_does_not_recognise(world: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="critic"):
        DefectTransferGenerator(world["gen"], world["bank"], critic_redraws=2, cache_dir=world["cache"])
    path = make_tiny_generator(world["root"] / "gen_critic", critic=True)
    images = torch.rand(8, 1, 80, 80)
    plain = DefectTransferGenerator(path, world["bank"], probability=1.0, seed=6, cache_dir=world["cache"])
    picky = DefectTransferGenerator(path, world["bank"], probability=1.0, seed=6, cache_dir=world["cache"],
                                    critic_redraws=4)
    plain(images)
    _, mask = picky(images)
    assert mask.flatten(1).sum(1).min() > 0, "the last draw is kept: every image still gets a defect"
    rate = [sum(i["critic_recognised"] for i in g.last_info) for g in (plain, picky)]
    assert rate[1] >= rate[0]
    from anomalib_defectgan.models.defect_gan import load_generator

    gan = load_generator(path)
    assert gan.critic is not None and gan.recognised(torch.rand(3, 1, 32, 32), torch.ones(3)).shape == (3,)


@pytest.mark.parametrize("shape", [(4, 1, 20, 24), (3, 3, 40, 56)])
def test_composite_bad_inputs_never_label_pixels_that_did_not_change(world: dict[str, Path],
                                                                      shape: tuple[int, ...]) -> None:
    """Canvases smaller than the 32 px crop, 3-channel canvases for a 1-channel GAN, and the bank's
    scratches, which run across the whole 48 px donor and so are cut by the 32 px donor window."""
    from anomalib_defectgan.data.blending import CHANGE_THRESHOLD

    path = make_tiny_generator(world["root"] / "gen_composite_bad", defect_path="composite")
    gen = DefectTransferGenerator(path, world["bank"], probability=1.0, seed=2, cache_dir=world["cache"],
                                  classes=["scratch"])
    images = torch.rand(shape) * 0.1 + 0.45
    augmented, mask = gen(images)
    assert augmented.shape == images.shape and mask.shape == (shape[0], 1, *shape[-2:])
    changed = (augmented - images).abs().mean(dim=1, keepdim=True) >= CHANGE_THRESHOLD
    untouched = (augmented - images).abs().amax(dim=1, keepdim=True) == 0
    assert torch.equal(mask.bool(), changed), "the mask is exactly the changed pixels"
    assert bool(untouched[~mask.bool()].all()), "outside the mask the canvas is bit for bit unchanged"
    painted = mask.flatten(1).sum(1) > 0
    assert all(painted[i] == (info is not None) for i, info in enumerate(gen.last_info)), \
        "an image without a defect has no info and an empty mask, never the reverse"
    assert painted.all()


def test_donor_whose_box_centre_misses_the_defect_still_gets_a_window_with_it(
        world: dict[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    """Two spots at opposite corners of a 96 px image: a 32 px window at their bounding-box centre
    holds no defect pixel (the AITEX case that stopped a benchmark with 'a donor_mask is empty'),
    and the defect is larger than the window, which the generator says when it is built."""
    import cv2
    import numpy as np

    from anomalib_defectgan.data.image_io import write_image
    from anomalib_defectgan.generators.defect_bank import DefectBank

    root = world["root"] / "bank_far_apart"
    image = np.full((96, 96), 140, np.uint8)
    mask = np.zeros((96, 96), np.uint8)
    for centre in ((8, 8), (87, 87)):
        cv2.circle(mask, centre, 4, 255, -1)
    image[mask > 0] = 40
    write_image(root / "spot" / "spot_0.png", image)
    write_image(root / "spot" / "masks" / "spot_0_mask.png", mask)
    bank = DefectBank(root)
    donor = bank.donors[0]
    assert donor.center == (47, 47)
    window_image, window_mask = bank.window(0, 32, 1)
    assert window_mask.sum() > 0 and bool((window_image[window_mask.bool()] < 0.2).all())
    path = make_tiny_generator(world["root"] / "gen_composite_far", classes=("spot",), defect_path="composite")
    with caplog.at_level(logging.WARNING, logger="anomalib_defectgan.generators.defect_transfer"):
        gen = DefectTransferGenerator(path, root, probability=1.0, seed=0, cache_dir=world["cache"])
    assert donor.extent == (88, 88) and gen.donors_cut == 1
    assert "larger than the GAN's 32 px window" in caplog.text and str(root) in caplog.text
    augmented, out_mask = gen(torch.full((3, 1, 64, 64), 0.55))
    assert out_mask.flatten(1).sum(1).min() > 0 and not torch.equal(augmented, torch.full_like(augmented, 0.55))


def _perturbed_transfers(world: dict[str, Path], name: str, setting: str,
                         values: tuple) -> tuple[Path, torch.Tensor, torch.Tensor, dict]:
    """``(generator, canvas, composite, {value: output})``: a composite-path GAN whose G changes
    something (untrained, it is the identity) painting three donors, once per ``setting`` value."""
    path = make_tiny_generator(world["root"] / name, defect_path="composite", composite_mode="residual")
    canvas = torch.rand(3, 1, 32, 32) * 0.1 + 0.45
    donor, orient = torch.tensor([0, 1, 4]), torch.tensor([0, 0, 0])
    outputs = {}
    for value in values:
        gen = DefectTransferGenerator(path, world["bank"], probability=1.0, seed=4, cache_dir=world["cache"],
                                      edge_margin=0, **{setting: value})
        torch.manual_seed(1)
        for layer in gen.gan.net.generator.to_rgb:
            layer.weight.data.normal_(0.0, 0.3)
        outputs[value] = gen._transfer(canvas, donor, orient)[0]
    pixels, masks = gen.donor_pixels(donor, orient)
    return path, canvas, gen.gan.net.composite(canvas, pixels, masks)[0], outputs


def test_change_scale_interpolates_between_the_composite_and_gs_output(world: dict[str, Path]) -> None:
    path, _, composite, outputs = _perturbed_transfers(world, "gen_scale", "change_scale", (1.0, 0.5, 0.0))
    assert (outputs[1.0] - composite).abs().max() > 0.05, "the perturbed G changes the composite"
    assert torch.allclose(outputs[0.0], composite, atol=1e-6)
    assert torch.allclose(outputs[0.5], (outputs[1.0] + composite) / 2, atol=1e-5)
    with pytest.raises(ValueError, match=r"change_scale must be in \[0, 1\], got 1.5"):
        DefectTransferGenerator(path, world["bank"], cache_dir=world["cache"], change_scale=1.5)


def test_gain_bounded_scale_is_the_largest_factor_within_the_bound() -> None:
    from anomalib_defectgan.generators.defect_transfer import gain_bounded_scale

    base = torch.tensor([[3.0, 4.0], [3.0, 4.0], [3.0, 4.0], [0.0, 0.0]])  # |base| = 5
    change = torch.tensor([[3.0, 4.0], [0.3, 0.4], [-3.0, -4.0], [1.0, 0.0]])
    t = gain_bounded_scale(base, change, 1.5)
    # amplifying: |base + t change| = 5 (1 + t) <= 7.5 -> t = 0.5; within the bound: 1; weakening: 1;
    # no composite change at all: any change is an unbounded gain -> 0
    assert torch.allclose(t, torch.tensor([0.5, 1.0, 1.0, 0.0]))
    bounded = (base + t[:, None] * change).norm(dim=1)
    assert bool((bounded[:3] <= 1.5 * 5 + 1e-6).all())
    assert torch.allclose(gain_bounded_scale(base[:1], torch.zeros(1, 2), 1.0), torch.ones(1))


def test_max_gain_keeps_each_transfer_within_its_composites_strength(world: dict[str, Path]) -> None:
    path, canvas, composite, outputs = _perturbed_transfers(world, "gen_gain", "max_gain", (None, 1.0))
    strength = {key: (out - canvas).flatten(1).norm(dim=1) for key, out in outputs.items()}
    own = (composite - canvas).flatten(1).norm(dim=1)
    assert bool((strength[None] > 1.05 * own).any()), "the perturbed G makes some transfer stronger"
    assert bool((strength[1.0] <= own * (1 + 1e-4)).all())
    # the bound only scales G's change: the output stays on the line from the composite to G's output
    t = ((outputs[1.0] - composite).flatten(1) * (outputs[None] - composite).flatten(1)).sum(1) / (
        (outputs[None] - composite).flatten(1).pow(2).sum(1))
    assert torch.allclose(outputs[1.0], composite + t[:, None, None, None] * (outputs[None] - composite), atol=1e-5)
    with pytest.raises(ValueError, match=r"max_gain must be at least 1"):
        DefectTransferGenerator(path, world["bank"], cache_dir=world["cache"], max_gain=0.5)


@pytest.mark.parametrize("mode", ["adaptive", "matched"])
def test_change_composite_generator_matches_on_openvino(world: dict[str, Path], mode: str) -> None:
    path = make_tiny_generator(world["root"] / f"gen_{mode}", defect_path="composite", composite_mode=mode)
    images = torch.rand(4, 1, 32, 32) * 0.1 + 0.45
    donors = [0, 1, 4, 5]
    gen = DefectTransferGenerator(path, world["bank"], probability=1.0, seed=4, cache_dir=world["cache"],
                                  edge_margin=0)
    augmented, mask = gen.paint_donors(images, donors)
    assert gen.gan.net.composite_mode == mode and mask.flatten(1).sum(1).min() > 0
    ov_gen = DefectTransferGenerator(path, world["bank"], probability=1.0, seed=4, cache_dir=world["cache"],
                                     edge_margin=0, backend="openvino")
    ov_augmented, _ = ov_gen.paint_donors(images, donors)
    assert (ov_augmented - augmented).abs().max() < 1e-3


def test_min_strength_paints_fainter_defects_and_labels_only_what_still_changed(world: dict[str, Path]) -> None:
    from anomalib_defectgan.data.blending import CHANGE_THRESHOLD

    path = make_tiny_generator(world["root"] / "gen_strength", defect_path="composite")
    images = torch.rand(6, 1, 80, 80) * 0.1 + 0.45
    full, faint = (DefectTransferGenerator(path, world["bank"], probability=1.0, seed=4, cache_dir=world["cache"],
                                           min_strength=s) for s in (1.0, 0.2))
    full_out, full_mask = full(images)
    faint_out, faint_mask = faint(images)
    assert all("strength" not in info for info in full.last_info), "strength 1 draws nothing"
    strengths = [info["strength"] for info in faint.last_info]
    assert all(0.2 <= s <= 1.0 for s in strengths) and min(strengths) < 0.9
    changed = (faint_out - images).abs().mean(dim=1, keepdim=True) >= CHANGE_THRESHOLD
    assert torch.equal(faint_mask.bool(), changed), "the mask is still exactly the changed pixels"
    assert torch.equal(faint_out[~faint_mask.bool().expand_as(faint_out)], images[~faint_mask.bool().expand_as(images)])
    same_draw = [i for i, (a, b) in enumerate(zip(full.last_info, faint.last_info, strict=True))
                 if (a["donor_path"], a["top"], a["left"]) == (b["donor_path"], b["top"], b["left"])]
    assert same_draw, "the first image draws donor and window before its strength"
    for i in same_draw:
        full_change, faint_change = ((out[i] - images[i]).abs().sum() for out in (full_out, faint_out))
        assert faint_change <= full_change * faint.last_info[i]["strength"] + 1e-4
    with pytest.raises(ValueError, match=r"min_strength must be in \(0, 1\], got 0"):
        DefectTransferGenerator(path, world["bank"], cache_dir=world["cache"], min_strength=0)


def grey_canvases() -> torch.Tensor:
    """Four 32 px canvases of grey noise, the same on every call."""
    return torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 0.1 + 0.45


def paint_fixed_donors(path: Path, world: dict[str, Path], **settings: object) -> tuple[torch.Tensor, torch.Tensor]:
    """Donors 0, 1, 4 and 5 painted onto :func:`grey_canvases` (seed 4, windows inside the canvas)."""
    gen = DefectTransferGenerator(path, world["bank"], probability=1.0, seed=4, cache_dir=world["cache"],
                                  edge_margin=0, **settings)
    return gen.paint_donors(grey_canvases(), [0, 1, 4, 5])


def test_composite_mode_overrides_the_gans_own_as_if_it_had_been_trained_with_it(world: dict[str, Path]) -> None:
    residual = make_tiny_generator(world["root"] / "gen_mode_residual", defect_path="composite",
                                   composite_mode="residual")
    paste = make_tiny_generator(world["root"] / "gen_mode_paste", defect_path="composite", composite_mode="paste")
    paint = functools.partial(paint_fixed_donors, world=world)

    as_trained, _ = paint(residual)
    overridden, mask = paint(residual, composite_mode="paste")
    reference, reference_mask = paint(paste)  # same seed: the same tiny weights, trained as paste
    assert (overridden - as_trained).abs().max() > 0.01, "the override changes the painting"
    assert torch.equal(overridden, reference) and torch.equal(mask, reference_mask)
    assert torch.equal(paint(residual, composite_mode="residual")[0], as_trained)
    with pytest.raises(ValueError, match="composite_mode must be one of"):
        paint(residual, composite_mode="poisson")
    code_path = make_tiny_generator(world["root"] / "gen_mode_code")
    with pytest.raises(ValueError, match="applies to a composite-path GAN"):
        paint(code_path, composite_mode="paste")
    with pytest.raises(ValueError, match="exported with composite_mode 'residual', not 'paste'"):
        paint(residual, composite_mode="paste", backend="openvino", openvino_model=world["root"] / "transfer.xml")


def test_change_region_defect_keeps_gs_change_on_the_donors_defect(world: dict[str, Path]) -> None:
    halo = make_tiny_generator(world["root"] / "gen_region_halo", defect_path="composite", change_bias=2.0)
    tight = make_tiny_generator(world["root"] / "gen_region_defect", defect_path="composite", change_bias=2.0,
                                change_region="defect")
    images = grey_canvases()
    paint = functools.partial(paint_fixed_donors, world=world)

    wide, wide_mask = paint(halo)
    narrow, narrow_mask = paint(halo, change_region="defect")
    reference, reference_mask = paint(tight)  # the same weights, saved with change_region "defect"
    assert torch.equal(narrow, reference) and torch.equal(narrow_mask, reference_mask)
    assert torch.equal(paint(tight, change_region="halo")[0], wide), "the override goes both ways"
    assert bool((narrow_mask <= wide_mask).all()), "the defect region lies inside the halo"
    per_image = narrow_mask.flatten(1).sum(1)
    assert bool((per_image > 0).all()) and bool((per_image < wide_mask.flatten(1).sum(1)).all()), \
        "G still paints each defect, and no longer the halo around it"
    assert torch.equal(narrow[narrow_mask.expand_as(narrow) == 0], images[narrow_mask.expand_as(images) == 0])
    with pytest.raises(ValueError, match="change_region must be one of"):
        paint(halo, change_region="ring")
    with pytest.raises(ValueError, match="change_region applies to a composite-path GAN"):
        paint(make_tiny_generator(world["root"] / "gen_region_code"), change_region="defect")
    with pytest.raises(ValueError, match="exported with change_region 'halo', not 'defect'"):
        paint(halo, change_region="defect", backend="openvino", openvino_model=world["root"] / "transfer.xml")
