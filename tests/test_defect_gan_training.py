"""DefectGan through Lightning on the procedural steel world: `defectgan fit`, resume, export-weights,
checkpoint round trip, bad input, and a short training that learns something."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from anomalib_defectgan.cli import main as cli
from anomalib_defectgan.data import make_synthetic_steel
from anomalib_defectgan.models.defect_gan import DefectGan, load_generator

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "defect_gan" / "tiny.yaml"
# Smaller than TINY so the Lightning round trips take seconds on a shared 2-core box.
FAST = ["--data.crop_size", "32", "--data.batch_size", "2", "--data.goods_per_batch", "1", "--data.val_samples", "2",
        "--model.base_channels", "8", "--model.max_channels", "32", "--model.d_base_channels", "8",
        "--model.d_max_channels", "32", "--model.classifier_steps", "2", "--model.sample_every", "1",
        "--trainer.log_every_n_steps", "1", "--trainer.enable_progress_bar", "false"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world") / "steel"
    make_synthetic_steel(out, size=64, per_class=1, good_per_grade=3, seed=0, progress=False)
    return out / "manifest.csv"


@pytest.fixture
def one_thread() -> None:
    """Tiny convolutions on a shared 2-core box run far faster on one thread than on two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fit(world: Path, root: Path, steps: int, *extra: str) -> int:
    return cli(["fit", "-c", str(TINY), "--data.manifest", str(world), "--trainer.max_steps", str(steps),
                "--trainer.default_root_dir", str(root), *FAST, *extra])


def test_fit_writes_logs_samples_checkpoint_and_generator_then_resumes(world: Path, tmp_path: Path,
                                                                      one_thread: None) -> None:
    root = tmp_path / "run"
    assert fit(world, root, 2) == 0
    run = root / "version_0"
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    for column in ("train/rec", "train/d_adv", "train/adv_transfer", "train/mask_supervision", "train/d_r1",
                   "classifier/train_accuracy"):
        assert column in header
    assert list(run.glob("events.out.tfevents.*")), "TensorBoard log"
    assert (run / "samples" / "step_0000001.png").is_file() and (run / "samples" / "final.png").is_file()
    assert (run / "generator" / "generator.safetensors").is_file()
    assert "- good" in (run / "hparams.yaml").read_text(), "vocabularies in the logged hyper-parameters"
    ckpt = run / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert state["global_step"] == 2, "global_step counts iterations (one D + one G step)"
    assert state["hyper_parameters"]["classes"][0] == "good" and state["hyper_parameters"]["crop_size"] == 32

    # checkpoint -> load -> identical transfer, matching the generator written at the end of fit
    model = DefectGan.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True)
    gen = load_generator(run / "generator")
    assert gen.classes == model.hparams.classes and gen.crop_size == 32
    torch.manual_seed(0)
    donors, canvas = torch.rand(2, 1, 32, 32), torch.rand(2, 1, 32, 32)
    donor_masks = torch.zeros(2, 1, 32, 32)
    donor_masks[:, :, 12:20, 4:28] = 1.0
    codes = gen.encode(donors, [1, 2])
    assert gen.needs_donor_pixels, "tiny.yaml ships the composite path"
    image, mask = gen.transfer(canvas, codes, donor=donors, donor_mask=donor_masks)
    enc = model.net_ema.encode(donors)
    k = torch.tensor([1, 2])
    with torch.no_grad():
        ref = model.net_ema.transfer(canvas, enc.z_d, enc.coarse_mask_logits, enc.style(k), k, torch.full((2,), len(gen.grades)),
                                     donors, donor_masks)
    assert torch.equal(image, ref.image) and torch.equal(mask, ref.mask)

    # export-weights from the checkpoint gives the same generator
    assert cli(["export-weights", "--ckpt", str(ckpt), "--out", str(tmp_path / "exported")]) == 0
    again, again_mask = load_generator(tmp_path / "exported").transfer(canvas, codes, donor=donors,
                                                                        donor_mask=donor_masks)
    assert torch.equal(again, image) and torch.equal(again_mask, mask)

    # resume continues the step count in the same version folder and does not retrain V
    assert fit(world, root, 4, "--ckpt_path", str(ckpt)) == 0
    assert not (root / "version_1").exists()
    resumed = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert resumed["global_step"] == 4
    assert pd.read_csv(run / "metrics.csv")["classifier/train_accuracy"].notna().sum() == 1


def test_bad_input_gives_clear_errors(world: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert fit(world, tmp_path / "run", 1, "--model.classes", "[good, dent]") == 2
    assert "do not match the data" in capsys.readouterr().err
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"model.weight": torch.zeros(2)}, "hyper_parameters": {"backbone": "resnet18"}}, other)
    assert cli(["export-weights", "--ckpt", str(other), "--out", str(tmp_path / "out")]) == 2
    assert "not a DefectGan checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "out").exists(), "nothing written"
    (tmp_path / "text.ckpt").write_text("hello")
    assert cli(["export-weights", "--ckpt", str(tmp_path / "text.ckpt"), "--out", str(tmp_path / "out")]) == 2
    assert "weights_only" in capsys.readouterr().err


@pytest.mark.slow
def test_short_training_learns_reconstruction_and_a_local_mask(tmp_path: Path, one_thread: None) -> None:
    import lightning.pytorch as pl

    from anomalib_defectgan.data import DefectDataModule

    pl.seed_everything(0)
    make_synthetic_steel(tmp_path / "steel", size=96, per_class=2, good_per_grade=4, seed=0, progress=False)
    dm = DefectDataModule(str(tmp_path / "steel" / "manifest.csv"), crop_size=32, batch_size=4, goods_per_batch=2,
                          steps_per_epoch=1000, val_samples=8)
    model = DefectGan(base_channels=8, max_channels=32, d_base_channels=8, d_max_channels=32, classifier_steps=10,
                      sample_every=0, export_generator=False, mask_warmup_steps=0, mask_ramp_steps=1)
    dm.setup("fit")
    model.configure_vocab(dm.classes, dm.grades, dm.channels, dm.crop_size)
    val = next(iter(dm.val_dataloader()))

    def measure() -> tuple[float, float]:
        """Re-insertion L1 on the fixed batch (EMA network) and mean transfer mask."""
        torch.manual_seed(1)
        with torch.no_grad():
            net, model.net = model.net, model.net_ema
            passes = model.forward_passes(val)
            model.net = net
            mask = model.sample(val).mask
        return float((passes.reinserted - passes.a).abs().mean()), float(mask.mean())

    rec_before, _ = measure()
    trainer = pl.Trainer(max_steps=120, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, accelerator="cpu")
    trainer.fit(model, dm)
    rec_after, mask_mean = measure()
    assert rec_after < rec_before, (rec_before, rec_after)
    assert 0.01 < mask_mean < 0.5, mask_mean
    assert bool(model.classifier_trained)


def test_bf16_autocast_trains_and_fp16_is_refused(world: Path, tmp_path: Path, one_thread: None,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import pandas as pd

    assert fit(world, tmp_path / "bf16", 2, "--trainer.precision", "bf16-mixed", "--model.r1_every", "1") == 0
    metrics = pd.read_csv(tmp_path / "bf16" / "version_0" / "metrics.csv")
    losses = metrics[["train/g_total", "train/d_total", "train/d_r1"]].dropna()
    assert len(losses) and bool(losses.map(lambda v: abs(v) < 1e6).all().all())
    # (on a CPU Lightning turns 16-mixed into bf16-mixed; 16-true shows the refusal)
    assert fit(world, tmp_path / "fp16", 1, "--trainer.precision", "16-true") == 2
    assert "not supported" in capsys.readouterr().err
