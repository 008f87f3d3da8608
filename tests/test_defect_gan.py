"""DefectGan networks, losses, one training iteration, EMA, determinism and the generator file.

Everything runs on tiny in-memory batches (32 px, 1 channel) so the whole file takes seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from anomalib_defectgan.data.batch import DefectBatch, GanBatch
from anomalib_defectgan.errors import DefectGanError
from anomalib_defectgan.models.defect_gan import DefectGan, DefectGanNet, load_generator
from anomalib_defectgan.models.defect_gan.discriminator import sample_patches
from anomalib_defectgan.models.defect_gan.inference import DefectGanGenerator
from anomalib_defectgan.models.defect_gan.loss import augment
from anomalib_defectgan.utils.openvino_precision import F32_CONFIG

CLASSES = ["good", "scratch", "pit"]
GRADES = ["dark", "bright"]
SIZE = 32


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    """Tiny convolutions on a shared 2-core box run far faster on one thread than on two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_model(**overrides: object) -> DefectGan:
    args = {
        "classes": CLASSES, "grades": GRADES, "channels": 1, "crop_size": SIZE, "base_channels": 8,
        "max_channels": 32, "zd_channels": 4, "sd_dim": 8, "zt_dim": 16, "w_dim": 16, "embed_dim": 8,
        "d_base_channels": 8, "d_max_channels": 32, "classifier_width": 8, "classifier_steps": 0, "r1_every": 2,
    }
    args.update(overrides)
    return DefectGan(**args)


def make_batch(seed: int = 0, pairs: int = 3, goods: int = 2, size: int = SIZE) -> GanBatch:
    gen = torch.Generator().manual_seed(seed)

    def part(count: int, defect: bool) -> DefectBatch:
        image = torch.rand(count, 1, size, size, generator=gen) * 0.3 + 0.4
        mask = torch.zeros(count, 1, size, size)
        if defect:
            mask[:, :, size // 4: size // 2, size // 3: size // 2] = 1.0
            mask[1:2] = 0.0
            mask[1:2, :, 5:9, 5:20] = 1.0
            image = image * (1 - mask) + 0.1 * mask
        classes = torch.tensor([1, 2, 1][:count] + [1] * max(0, count - 3)) if defect else torch.zeros(count).long()
        kinds = torch.full((count,), 2 if defect else 0)
        if defect:
            kinds[-1] = 1  # one box mask
        return DefectBatch(image, mask, classes, torch.arange(count) % 2, kinds)

    return GanBatch(part(pairs, True), part(pairs, False), part(goods, False))


def iteration(model: DefectGan, batch: GanBatch, r1: bool = True) -> tuple[dict, dict]:
    """One D step then one G step, the way training_step does it (without a Trainer)."""
    opt_g, opt_d = model.configure_optimizers()
    f = model.forward_passes(batch)
    d_losses = model.loss.discriminator_losses(f, model.critics, r1=r1)
    opt_d.zero_grad()
    sum(d_losses.values()).backward()
    d_grads = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    opt_d.step()
    for p in model.parameters():
        p.grad = None
    g_losses = model.loss.generator_losses(f, model.critics)
    g_total = model.loss.generator_total(g_losses)
    opt_g.zero_grad()
    g_total.backward()
    g_grads = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    opt_g.step()
    model.update_ema()
    return ({"d": d_losses, "g": g_losses}, {"d": d_grads, "g": g_grads})


def test_shapes_mask_range_and_composite_bound() -> None:
    torch.manual_seed(0)
    net = tiny_model().net
    donor, canvas = torch.rand(2, 1, 64, 48), torch.rand(2, 1, 64, 48)
    enc = net.encode(donor)
    k = torch.tensor([1, 2])
    assert enc.z_d.shape == (2, 4, 8, 6) and enc.coarse_mask_logits.shape == (2, 1, 8, 6)
    assert enc.style(k).shape == (2, 8) and enc.z_t.shape == (2, 16)
    assert torch.allclose(enc.z_t.norm(dim=1), torch.ones(2), atol=1e-5)
    out = net.transfer(canvas, enc.z_d, enc.coarse_mask_logits, enc.style(k), k, torch.tensor([0, 2]))  # 2 = unknown grade
    assert out.image.shape == canvas.shape and out.mask.shape == (2, 1, 64, 48)
    assert out.mask.min() >= 0 and out.mask.max() <= 1
    assert out.image.min() >= 0 and out.image.max() <= 1
    bound = out.mask * (out.foreground - canvas).abs()
    assert ((out.image - canvas).abs() <= bound + 1e-6).all()


def test_style_vector_is_zero_for_good_only() -> None:
    torch.manual_seed(0)
    enc = tiny_model().net.encode(torch.rand(3, 1, SIZE, SIZE))
    assert torch.count_nonzero(enc.style(torch.zeros(3, dtype=torch.long))) == 0
    defect_style = enc.style(torch.tensor([1, 2, 1]))
    assert (defect_style.abs().sum(dim=1) > 0).all()
    assert not torch.allclose(defect_style[0], enc.style(torch.tensor([2, 2, 2]))[0]), "one head per class"


def test_one_d_and_one_g_step_give_finite_losses_and_gradients_everywhere() -> None:
    torch.manual_seed(0)
    model = tiny_model()
    model.classifier_trained.fill_(True)  # include the V critic term
    losses, grads = iteration(model, make_batch())
    assert {"d_r1", "d_cooc_r1"} <= set(losses["d"]), "lazy R1 ran"
    assert losses["d"]["d_r1"] > 0 and "v_critic" in losses["g"]
    for group in losses.values():
        for name, value in group.items():
            assert torch.isfinite(value), name
    d_params = {n for n, _ in model.named_parameters() if n.startswith(("discriminator.", "cooccurrence."))}
    g_params = {n for n, _ in model.named_parameters() if n.startswith(("net.", "leak_"))}
    assert set(grads["d"]) == d_params, "the D step reaches every D parameter and nothing else"
    assert set(grads["g"]) >= g_params, "the G step reaches every encoder/generator/leak parameter"
    for group in grads.values():
        for name, grad in group.items():
            assert torch.isfinite(grad).all(), name


def test_r1_is_lazy() -> None:
    torch.manual_seed(0)
    model = tiny_model()
    f = model.forward_passes(make_batch())
    assert "d_r1" not in model.loss.discriminator_losses(f, model.critics, r1=False)


def test_ema_moves_but_differs_from_live_weights() -> None:
    torch.manual_seed(0)
    model = tiny_model()
    before = [p.clone() for p in model.net_ema.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(before, model.net.parameters(), strict=True))
    iteration(model, make_batch(), r1=False)
    ema, live = list(model.net_ema.parameters()), list(model.net.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(ema, before, strict=True)), "EMA was updated"
    assert any(not torch.equal(a, b) for a, b in zip(ema, live, strict=True)), "EMA is not a copy of live"
    assert all(not p.requires_grad for p in model.net_ema.parameters())


def test_fixed_seed_gives_identical_training_and_output() -> None:
    def run() -> tuple[torch.Tensor, float]:
        torch.manual_seed(7)
        model = tiny_model()
        losses, _ = iteration(model, make_batch(), r1=True)
        out = model.sample(make_batch(seed=1))
        return out.transfer, float(sum(losses["g"].values()).detach())

    (image_a, loss_a), (image_b, loss_b) = run(), run()
    assert torch.equal(image_a, image_b) and loss_a == loss_b


def test_plate_penalty_punishes_a_plate_and_spares_edge_detail() -> None:
    from anomalib_defectgan.models.defect_gan.loss import plate_penalty

    composite = torch.rand(2, 1, 32, 32)
    region = torch.zeros(2, 1, 32, 32)
    region[..., 8:24, 8:24] = 1.0
    plate = composite + 0.1 * region  # a brighter disc over the region
    checker = (torch.arange(32).view(1, 32) + torch.arange(32).view(32, 1)) % 2
    detail = composite + 0.1 * region * (2.0 * checker - 1.0)  # same amplitude, pixel-scale
    assert plate_penalty(composite, composite, region) == 0
    assert plate_penalty(plate, composite, region) > 0.05
    assert plate_penalty(detail, composite, region) < 0.2 * plate_penalty(plate, composite, region)


def test_strength_excess_is_zero_up_to_the_composite_and_grows_with_the_gain() -> None:
    from anomalib_defectgan.models.defect_gan.loss import strength_excess

    canvas = torch.rand(3, 1, 16, 16)
    change = torch.zeros_like(canvas)
    change[..., 4:12, 7:9] = -0.2  # a thin dark scratch
    composite = canvas + change
    assert strength_excess(composite, composite, canvas) == 0
    assert strength_excess(canvas + 0.5 * change, composite, canvas) == 0, "a fainter transfer costs nothing"
    doubled, tripled = strength_excess(canvas + 2 * change, composite, canvas), strength_excess(
        canvas + 3 * change, composite, canvas)
    assert doubled == pytest.approx(1.0, abs=1e-4) and tripled == pytest.approx(2.0, abs=1e-4)
    halo = canvas + change + 0.05 * (change == 0).float()  # same scratch, a bright plate around it
    assert strength_excess(halo, composite, canvas) > 0
    untouched = canvas.clone().requires_grad_(True)
    empty = strength_excess(untouched, canvas, canvas)
    assert torch.isfinite(empty) and empty == 0, "an empty composite left alone costs nothing"
    (grad,) = torch.autograd.grad(empty, untouched)
    assert torch.isfinite(grad).all(), "no NaN gradient from a zero-length change (it would poison G at any weight)"


def test_strength_weight_trains_the_transfer_towards_the_composite_strength() -> None:
    from anomalib_defectgan.models.defect_gan.loss import strength_excess

    torch.manual_seed(0)
    model = tiny_model(defect_path="composite", composite_mode="matched", loss_weights={"strength": 1.0})
    f = model.forward_passes(make_batch())
    amplified = f.b + 3.0 * (f.pasted - f.b)
    f.transfer = amplified.detach().requires_grad_(True)
    losses = model.loss.generator_losses(f, model.critics)
    assert losses["strength"] > 1.0
    (grad,) = torch.autograd.grad(losses["strength"], f.transfer, retain_graph=True)
    step = f.transfer - 0.1 * grad / grad.abs().max()
    assert strength_excess(step, f.pasted, f.b) < losses["strength"], "its gradient weakens the change"
    unweighted = tiny_model(defect_path="composite", composite_mode="matched").loss.generator_losses(f, model.critics)
    assert unweighted["strength"] == pytest.approx(float(losses["strength"]))
    assert not unweighted["strength"].requires_grad, "at the default weight 0 it is logged, not trained"


def test_mask_supervision_box_and_pixel() -> None:
    from anomalib_defectgan.models.defect_gan.loss import mask_supervision

    target = torch.zeros(2, 1, 8, 8)
    target[:, :, 2:5, 2:5] = 1
    inside = torch.where(target > 0, 6.0, -6.0)
    outside = -inside
    pixel, box, none = torch.tensor([2, 2]), torch.tensor([1, 1]), torch.tensor([0, 0])
    assert mask_supervision(inside, target, pixel) < 0.1 < mask_supervision(outside, target, pixel)
    assert mask_supervision(inside, target, box) < 0.01 < mask_supervision(outside, target, box)
    assert mask_supervision(torch.full_like(target, -6.0), target, box) < 0.01, "box: only outside is penalised"
    assert mask_supervision(outside, target, none) == 0


def test_augment_and_patches_are_exact_crops() -> None:
    torch.manual_seed(0)
    image = torch.arange(2 * 16 * 16, dtype=torch.float32).view(2, 1, 16, 16)
    out = augment(image, 0.0)
    for i in range(2):
        variants = [image[i], image[i].flip(-1), image[i].flip(-2), image[i].flip(-1).flip(-2)]
        assert any(torch.equal(out[i], v) for v in variants)
    weight = torch.zeros(2, 1, 16, 16)
    weight[:, :, 15, 15] = 1.0
    patches = sample_patches(image, weight, 3, 4)
    assert patches.shape == (2, 3, 1, 4, 4)
    assert torch.equal(patches[1, 0, 0], image[1, 0, 12:, 12:]), "centres are moved inside the image"


def test_generator_file_round_trip_and_api(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = tiny_model()
    iteration(model, make_batch(), r1=False)
    weights = model.export_generator(tmp_path / "gen")
    meta = json.loads((tmp_path / "gen" / "generator.json").read_text())
    assert meta["kind"] == "defectgan-generator" and meta["classes"] == CLASSES and meta["grades"] == GRADES
    assert meta["channels"] == 1 and meta["crop_size"] == SIZE
    direct = DefectGanGenerator(model.net_ema, CLASSES, GRADES, SIZE).eval()
    for path in (tmp_path / "gen", weights):
        gen = load_generator(path)
        assert not gen.training and gen.classes == CLASSES and gen.channels == 1
        donors, canvas = make_batch().donor.image, make_batch(seed=3).canvas.image
        codes = gen.encode(donors, ["scratch", "pit", "scratch"])
        assert codes.defect_class.tolist() == [1, 2, 1]
        image, mask = gen.transfer(canvas, codes)
        ref_image, ref_mask = direct.transfer(canvas, direct.encode(donors, [1, 2, 1]))
        assert torch.equal(image, ref_image) and torch.equal(mask, ref_mask)
        one, _ = gen.transfer(canvas, codes.index(slice(0, 1)), "pit", grade="a-new-grade")
        assert one.shape == canvas.shape
        restored, restore_mask = gen.restore(donors)
        assert restored.shape == donors.shape and restore_mask.shape == (3, 1, SIZE, SIZE)
    with pytest.raises(DefectGanError, match="unknown defect class"):
        gen.encode(donors, "dent")
    with pytest.raises(DefectGanError, match="does not match"):
        gen.transfer(torch.rand(3, 1, 48, 48), codes)


def test_load_generator_rejects_other_kinds(tmp_path: Path) -> None:
    model = tiny_model()
    model.export_generator(tmp_path / "gen")
    config = tmp_path / "gen" / "generator.json"
    with pytest.raises(DefectGanError, match="not found"):
        load_generator(tmp_path / "missing")
    meta = json.loads(config.read_text())
    config.write_text(json.dumps({**meta, "kind": "something-else"}))
    with pytest.raises(DefectGanError, match="expected 'defectgan-generator'"):
        load_generator(tmp_path / "gen")
    config.write_text(json.dumps({**meta, "config": {**meta["config"], "base_channels": 16}}))
    with pytest.raises(DefectGanError, match="do not match"):
        load_generator(tmp_path / "gen")
    (tmp_path / "gen" / "generator.safetensors").write_bytes(b"not safetensors")
    config.write_text(json.dumps(meta))
    with pytest.raises(DefectGanError, match="safetensors"):
        load_generator(tmp_path / "gen")


def test_vocabulary_mismatch_is_a_clear_error() -> None:
    model = tiny_model()
    with pytest.raises(DefectGanError, match="classes"):
        model.configure_vocab(["good", "scratch", "dent"], GRADES, 1, SIZE)
    with pytest.raises(DefectGanError, match="crop_size"):
        model.configure_vocab(CLASSES, GRADES, 1, 64)
    with pytest.raises(DefectGanError, match="unknown loss weight"):
        tiny_model(loss_weights={"rec": 1.0, "typo": 2.0})
    # resuming from a checkpoint made for other data, or from another kind of checkpoint
    state = {"state_dict": model.state_dict(), "hyper_parameters": {**model.hparams, "grades": ["dark", "new"]}}
    with pytest.raises(DefectGanError, match="grades"):
        model.on_load_checkpoint(state)
    with pytest.raises(DefectGanError, match="not a DefectGan checkpoint"):
        model.on_load_checkpoint({"state_dict": {"model.weight": torch.zeros(1)}, "hyper_parameters": {}})
    model.on_load_checkpoint({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)})


def test_transfer_graph_converts_to_openvino() -> None:
    ov = pytest.importorskip("openvino")
    from anomalib_defectgan.generators.openvino_backend import convert

    torch.manual_seed(0)
    gen = DefectGanGenerator(tiny_model().net_ema, CLASSES, GRADES, SIZE).eval()
    donors, canvas = make_batch().donor.image, make_batch(seed=2).canvas.image
    codes = gen.encode(donors, [1, 2, 1])
    grade = torch.full((3,), 2, dtype=torch.long)
    inputs = (canvas, codes.z_d, codes.coarse_mask_logits, codes.s_d, codes.defect_class, grade)
    graph = gen.export_module()
    with torch.no_grad():
        ref_image, ref_mask = graph(*inputs)
        compiled = ov.compile_model(convert(gen), "CPU", F32_CONFIG)  # via torch.export, batch 2 -> 3
    result = compiled([t.numpy() for t in inputs])
    assert torch.allclose(torch.from_numpy(result[0]), ref_image, atol=1e-4)
    assert torch.allclose(torch.from_numpy(result[1]), ref_mask, atol=1e-4)


def test_code_levels_3_keeps_the_defect_code_at_quarter_resolution(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = tiny_model(code_levels=3)
    enc = model.net.encode(torch.rand(2, 1, SIZE, SIZE))
    assert enc.z_d.shape[-2:] == (SIZE // 4, SIZE // 4) and enc.coarse_mask_logits.shape[-2:] == (SIZE // 4, SIZE // 4)
    losses, _ = iteration(model, make_batch(), r1=False)
    assert all(torch.isfinite(v) for group in losses.values() for v in group.values())
    gen = load_generator(model.export_generator(tmp_path / "gen"))
    assert gen.net.code_stride == 4
    canvas = make_batch(seed=1).canvas.image
    image, mask = gen.transfer(canvas, gen.encode(make_batch().donor.image, [1, 2, 1]))
    assert image.shape == canvas.shape and mask.shape == (3, 1, SIZE, SIZE)
    with pytest.raises(ValueError, match="code_levels"):
        DefectGanNet(num_classes=3, code_levels=7)
    with pytest.raises(DefectGanError, match="multiple of 16"):
        tiny_model(code_levels=5, crop_size=40)


def test_composite_path_starts_as_the_identity_of_the_pasted_defect() -> None:
    from anomalib_defectgan.data.blending import paste_feathered

    torch.manual_seed(0)
    model = tiny_model(defect_path="composite")
    batch = make_batch()
    f = model.forward_passes(batch)
    pasted, alpha = paste_feathered(batch.canvas.image, batch.donor.image, batch.donor.mask)
    assert torch.allclose(f.pasted, pasted)
    assert torch.allclose(f.transfer, pasted, atol=1e-5), "zero-initialised residual: X is the composite"
    outside = f.m_t == 0
    assert torch.equal(f.transfer[outside], batch.canvas.image[outside]), "nothing changes outside the region"
    assert bool((f.m_t >= (alpha > 0).float()).all()), "the region holds the whole pasted defect"
    assert (f.pasted - batch.canvas.image).abs()[alpha.expand_as(pasted) > 0.5].mean() > 0.05


def test_composite_path_trains_and_refines_only_inside_the_region() -> None:
    torch.manual_seed(0)
    model = tiny_model(defect_path="composite")
    batch = make_batch()
    for _ in range(3):
        losses, _ = iteration(model, batch, r1=False)
    assert "self_reg" in losses["g"] and all(torch.isfinite(v) for v in losses["g"].values())
    f = model.forward_passes(batch)
    inside = f.m_t.expand_as(f.transfer) > 0
    assert (f.transfer - f.pasted).abs()[inside].max() > 0, "G has learned a residual"
    assert torch.equal(f.transfer[~inside], batch.canvas.image[~inside])


def test_filled_paired_background_is_the_donor_without_its_defect_and_trains() -> None:
    from anomalib_defectgan.models.defect_gan.passes import paired_canvas

    torch.manual_seed(0)
    batch = make_batch()
    donor, mask = batch.donor.image, batch.donor.mask
    base = paired_canvas(donor, mask)
    outside = mask.expand_as(donor) == 0
    assert torch.equal(base[outside], donor[outside]), "the donor's own pixels around its defect"
    background = donor[outside].mean()
    assert (base - background).abs()[~outside].mean() < 0.5 * (donor - background).abs()[~outside].mean(), \
        "the defect is filled in with the material around it"
    model = tiny_model(defect_path="composite", composite_mode="residual", paired_background="filled",
                       contrast_jitter=0.0)
    f = model.forward_passes(batch)
    expected = model.net.composite(base, donor, mask)[0]
    assert torch.allclose(f.reinserted, expected, atol=2e-3), "G starts as the identity of the filled composite"
    assert not torch.allclose(f.restored, base, atol=2e-3), "and that is not G's restoration"
    for _ in range(2):
        losses, _ = iteration(model, batch, r1=False)
    assert all(torch.isfinite(v) for v in losses["g"].values())
    with pytest.raises(DefectGanError, match="paired_background"):
        tiny_model(defect_path="composite", paired_background="restoration")


@pytest.mark.parametrize("through", [True, False])
def test_cycle_through_transfer_decides_whether_the_cycle_terms_train_the_transfer(through: bool) -> None:
    torch.manual_seed(0)
    model = tiny_model(defect_path="composite", composite_mode="matched", cycle_through_transfer=through)
    f = model.forward_passes(make_batch())
    losses = model.loss.generator_losses(f, model.critics)
    for name in ("cycle", "mask_cycle", "latent"):
        (grad,) = torch.autograd.grad(losses[name], f.transfer, retain_graph=True, allow_unused=True)
        reaches = grad is not None and bool(grad.abs().sum() > 0)
        assert reaches == through, f"{name} reaches X: {reaches}"
    (grad,) = torch.autograd.grad(losses["cycle"], model.net.encoder.parameters().__next__(), retain_graph=True,
                                  allow_unused=True)
    assert grad is not None and grad.abs().sum() > 0, "the cycle still trains the encoder"
    (grad,) = torch.autograd.grad(losses["self_reg"], f.transfer, retain_graph=True)
    assert grad.abs().sum() > 0, "self_reg trains X either way"


def test_region_feather_fades_the_change_out_instead_of_a_hard_edge() -> None:
    from anomalib_defectgan.data.blending import dilate

    batch = make_batch()
    canvas, donor, mask = batch.canvas.image, batch.donor.image, batch.donor.mask
    hard = DefectGanNet(num_classes=3, defect_path="composite", region_dilation=1)
    soft = DefectGanNet(num_classes=3, defect_path="composite", region_dilation=1, region_feather=2.0)
    _, hard_region = hard.composite(canvas, donor, mask)
    pasted, soft_region = soft.composite(canvas, donor, mask)
    assert set(hard_region.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(soft_region[hard_region == 1], torch.ones_like(soft_region[hard_region == 1]))
    fade = soft_region[(hard_region == 0) & (soft_region > 0)]
    assert fade.numel() > 0 and bool((fade < 1).all()), "a ring of partial weights around the hard region"
    assert bool((soft_region <= dilate(hard_region, 5)).all()), "the fade is local (about 2 sigma)"
    with torch.no_grad():  # a G that brightens everything it may touch
        for layer in soft.generator.to_rgb:
            layer.bias.fill_(1.0)
        out = soft.generator(pasted, soft.encoder(pasted).features, torch.zeros(len(canvas), 8, 4, 4),
                             torch.zeros(len(canvas), 1, 4, 4), torch.zeros(len(canvas), 64), soft_region)
    change = (out.image - pasted).abs().mean(dim=1, keepdim=True)
    assert torch.equal(out.image[(soft_region == 0).expand_as(pasted)], pasted[(soft_region == 0).expand_as(pasted)])
    with pytest.raises(ValueError, match="region_feather"):
        DefectGanNet(num_classes=3, defect_path="composite", region_feather=-1.0)
    assert change[(soft_region > 0) & (soft_region < 0.5)].mean() < change[soft_region == 1].mean()


def test_change_region_defect_is_the_donors_defect_grown_not_its_feathered_halo(tmp_path: Path) -> None:
    from anomalib_defectgan.data.blending import dilate

    batch = make_batch()
    canvas, donor, mask = batch.canvas.image, batch.donor.image, batch.donor.mask
    halo = DefectGanNet(num_classes=3, defect_path="composite", region_dilation=1)
    tight = DefectGanNet(num_classes=3, defect_path="composite", region_dilation=1, change_region="defect")
    pasted, halo_region = halo.composite(canvas, donor, mask)
    same, region = tight.composite(canvas, donor, mask)
    assert torch.equal(same, pasted), "the composite itself is the same"
    assert torch.equal(region, dilate((mask >= 0.5).float(), 1))
    assert bool((region <= halo_region).all()) and region.sum() < halo_region.sum()
    with pytest.raises(ValueError, match="change_region"):
        DefectGanNet(num_classes=3, defect_path="composite", change_region="ring")
    model = tiny_model(defect_path="composite", change_region="defect")
    with torch.no_grad():  # a G (live and the exported EMA copy) that brightens everything it may touch
        for net in (model.net, model.net_ema):
            for layer in net.generator.to_rgb:
                layer.bias.fill_(1.0)
        f = model.forward_passes(batch)
    assert torch.equal(f.m_t, region), "training uses the same region"
    outside = (f.m_t == 0).expand_as(f.transfer)
    assert torch.equal(f.transfer[outside], f.pasted[outside]), "the composite's feathered edge is left as pasted"
    assert (f.transfer - f.pasted)[~outside].mean() > 0.05
    gen = load_generator(model.export_generator(tmp_path / "gen"))
    assert gen.net.change_region == "defect"
    pytest.importorskip("openvino")
    from anomalib_defectgan.generators.openvino_backend import OpenVinoTransfer

    codes = gen.encode(donor, [1, 2, 1])
    inputs = (canvas, codes.z_d, codes.coarse_mask_logits, codes.s_d, codes.defect_class,
              torch.full((3,), 2, dtype=torch.long), donor, mask)
    with torch.no_grad():
        ref_image, ref_mask = gen.export_module()(*inputs)
    image, exported_mask = OpenVinoTransfer.from_generator(gen)(*inputs)
    assert torch.equal(ref_mask, region), "the exported graph changes the defect region only"
    assert torch.allclose(image, ref_image, atol=1e-4) and torch.equal(exported_mask, ref_mask)
    changed = (image - pasted).abs().amax(dim=1, keepdim=True) > 1e-3
    assert bool(changed.any()) and bool((changed <= (region > 0)).all()), "OpenVINO paints inside the region, only there"


def test_composite_generator_file_needs_and_uses_donor_pixels(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = tiny_model(defect_path="composite")
    iteration(model, make_batch(), r1=False)
    gen = load_generator(model.export_generator(tmp_path / "gen"))
    assert gen.needs_donor_pixels and gen.export_module().input_names[-2:] == ["donor", "donor_mask"]
    donors, masks = make_batch().donor.image, make_batch().donor.mask
    canvas = make_batch(seed=1).canvas.image
    codes = gen.encode(donors, [1, 2, 1])
    with pytest.raises(DefectGanError, match="needs donor"):
        gen.transfer(canvas, codes)
    with pytest.raises(DefectGanError, match="empty"):
        gen.transfer(canvas, codes, donor=donors, donor_mask=torch.zeros_like(masks))
    with pytest.raises(DefectGanError, match="do not match"):
        gen.transfer(canvas, codes, donor=donors[..., :16, :16], donor_mask=masks)
    image, region = gen.transfer(canvas, codes, donor=donors, donor_mask=masks)
    assert image.shape == canvas.shape and set(region.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(image[region.expand_as(image) == 0], canvas[region.expand_as(canvas) == 0])


def test_composite_transfer_graph_converts_to_openvino() -> None:
    pytest.importorskip("openvino")
    from anomalib_defectgan.generators.openvino_backend import OpenVinoTransfer

    torch.manual_seed(0)
    gen = DefectGanGenerator(tiny_model(defect_path="composite").net_ema, CLASSES, GRADES, SIZE).eval()
    batch = make_batch()
    codes = gen.encode(batch.donor.image, [1, 2, 1])
    canvas = make_batch(seed=2).canvas.image
    grade = torch.full((3,), 2, dtype=torch.long)
    inputs = (canvas, codes.z_d, codes.coarse_mask_logits, codes.s_d, codes.defect_class, grade, batch.donor.image, batch.donor.mask)
    with torch.no_grad():
        ref_image, ref_mask = gen.export_module()(*inputs)
    ov_transfer = OpenVinoTransfer.from_generator(gen)
    image, mask = ov_transfer(*inputs)
    assert torch.allclose(image, ref_image, atol=1e-4) and torch.equal(mask, ref_mask)
    with pytest.raises(DefectGanError, match="takes 8 inputs"):
        ov_transfer(*inputs[:6])


def test_fill_from_surroundings_paints_a_defect_away_and_keeps_the_rest() -> None:
    from anomalib_defectgan.data.blending import fill_from_surroundings

    ramp = torch.linspace(0.2, 0.8, 48).view(1, 1, 1, 48).expand(2, 1, 40, 48).clone()
    known = torch.ones(2, 1, 40, 48)
    known[0, :, 18:21, :] = 0.0  # a thin scratch across the image
    known[1, :, 5:35, 10:30] = 0.0  # a large blob
    defective = torch.where(known > 0, ramp, torch.ones_like(ramp))
    filled = fill_from_surroundings(defective, known)
    assert torch.equal(filled[known.bool()], ramp[known.bool()]), "known pixels unchanged"
    assert (filled[0] - ramp[0]).abs()[~known[0].bool()].max() < 0.02, "a scratch is replaced by its sides"
    assert (filled[1] - ramp[1]).abs()[~known[1].bool()].mean() < 0.1, "a blob by its surroundings"


def test_residual_composite_carries_the_defect_as_a_change_of_the_canvas() -> None:
    from anomalib_defectgan.data.blending import paste_change, paste_feathered

    canvas = torch.full((1, 1, 16, 16), 0.3)
    canvas[..., ::2] = 0.4  # the new material's texture
    donor = torch.full((1, 1, 16, 16), 0.8)
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 6:10, 6:10] = 1.0
    donor[mask.bool()] = 0.6  # a defect 0.2 darker than its material
    inside = mask.bool()
    offset, alpha = paste_change(canvas, donor, mask, feather=0.0)
    assert torch.allclose(offset[inside], canvas[inside] - 0.2), "donor - background added"
    assert torch.equal(offset[~inside], canvas[~inside]) and torch.equal(alpha, mask)
    patch = offset[..., 6:10, 6:10]
    assert not torch.equal(patch[..., 0], patch[..., 1]), "the canvas texture shows through the defect"
    pasted, _ = paste_feathered(canvas, donor, mask, feather=0.0)
    flat = pasted[..., 6:10, 6:10]
    assert torch.equal(flat[..., 0], flat[..., 1]), "a paste carries the donor's flat pixels instead"
    with pytest.raises(ValueError, match="composite_mode"):
        DefectGanNet(num_classes=3, defect_path="composite", composite_mode="ratio")


def test_residual_generator_trains_exports_and_matches_openvino(tmp_path: Path) -> None:
    from anomalib_defectgan.data.blending import paste_change

    torch.manual_seed(0)
    model = tiny_model(defect_path="composite", composite_mode="residual")
    batch = make_batch()
    f = model.forward_passes(batch)
    expected, _ = paste_change(batch.canvas.image, batch.donor.image, batch.donor.mask)
    assert torch.allclose(f.pasted, expected) and torch.allclose(f.transfer, expected, atol=2e-3), \
        "G starts as the identity of the residual composite (up to the 1e-3 clamp of its logit skip)"
    losses, _ = iteration(model, batch, r1=False)
    assert all(torch.isfinite(v) for v in losses["g"].values())
    gen = load_generator(model.export_generator(tmp_path / "gen"))
    assert gen.net.composite_mode == "residual"
    donors, masks = batch.donor.image, batch.donor.mask
    canvas = make_batch(seed=1).canvas.image
    codes = gen.encode(donors, [1, 2, 1])
    image, region = gen.transfer(canvas, codes, donor=donors, donor_mask=masks)
    assert torch.equal(image[region.expand_as(image) == 0], canvas[region.expand_as(canvas) == 0])
    pytest.importorskip("openvino")
    from anomalib_defectgan.generators.openvino_backend import OpenVinoTransfer

    grade = torch.full((3,), 2, dtype=torch.long)
    inputs = (canvas, codes.z_d, codes.coarse_mask_logits, codes.s_d, codes.defect_class, grade, donors, masks)
    with torch.no_grad():
        ref_image, ref_mask = gen.export_module()(*inputs)
    image, mask = OpenVinoTransfer.from_generator(gen)(*inputs)
    assert torch.allclose(image, ref_image, atol=1e-4) and torch.equal(mask, ref_mask)


def test_defect_path_is_checked() -> None:
    with pytest.raises(ValueError, match="defect_path"):
        DefectGanNet(num_classes=3, defect_path="pixels")


def test_generator_export_keeps_the_trained_critic(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = tiny_model(classifier_steps=2)
    model.train_classifier(iter([make_batch(), make_batch(seed=1)]), 2)
    gen = load_generator(model.export_generator(tmp_path / "gen"))
    assert (tmp_path / "gen" / "critic.safetensors").is_file() and gen.critic is not None
    crops = make_batch().donor.image
    expected = model.classifier(crops).class_logits.argmax(1) == torch.tensor([1, 2, 1])
    assert torch.equal(gen.recognised(crops, torch.tensor([1, 2, 1])), expected)
    untrained = load_generator(tiny_model().export_generator(tmp_path / "plain"))
    assert untrained.critic is None and bool(untrained.recognised(crops, torch.ones(3)).all())


def test_sample_grids_keep_one_batch_and_write_on_schedule(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from anomalib_defectgan.data.image_io import read_image
    from anomalib_defectgan.models.defect_gan.sample_grid import SampleGrids

    model = tiny_model()
    trainer = SimpleNamespace(datamodule=None, global_step=0, is_global_zero=True, log_dir=str(tmp_path),
                              default_root_dir=str(tmp_path), loggers=[])
    grids = SampleGrids(every=2, count=2)
    grids.on_train_start(trainer, model)
    assert grids.batch is None, "no validation loader: the grid waits for the first training batch"
    first, second = make_batch(), make_batch(seed=1)
    for step, batch in ((1, first), (2, second), (3, second)):
        trainer.global_step = step
        grids.on_train_batch_end(trainer, model, None, batch, 0)
    assert grids.batch is first, "the grid's batch stays the first one"
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["step_0000002.png"]
    trainer.is_global_zero = False
    grids.on_train_end(trainer, model)
    assert not (tmp_path / "samples" / "final.png").exists(), "only rank 0 writes"
    trainer.is_global_zero = True
    grids.on_train_end(trainer, model)
    grid = read_image(tmp_path / "samples" / "final.png")
    assert grid.shape[0] == 2 * (SIZE + 2) + 2, "two rows of tiles, 2 px padding"


def test_vocabulary_checks_name_the_mismatch() -> None:
    from anomalib_defectgan.models.defect_gan.vocabulary import check_checkpoint, checked_vocab

    with pytest.raises(DefectGanError, match="must start with 'good'"):
        checked_vocab({}, ["scratch", "good"], ["a"], 1, 32)
    with pytest.raises(DefectGanError, match="must start with 'good'"):
        checked_vocab({}, [], ["a"], 1, 32)
    with pytest.raises(DefectGanError, match=r"model channels 3 do not match the data's 1"):
        checked_vocab({"channels": 3}, ["good", "scratch"], ["a"], 1, 32)
    assert checked_vocab({"classes": []}, ["good", "s"], ["a"], 1, 32)["classes"] == ["good", "s"]
    model = tiny_model()
    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    check_checkpoint(checkpoint, model.hparams)
    with pytest.raises(DefectGanError, match=r"the checkpoint's grades \['other'\] do not match"):
        check_checkpoint({**checkpoint, "hyper_parameters": {**model.hparams, "grades": ["other"]}}, model.hparams)
