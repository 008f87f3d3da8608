"""`defectgan fit` never goes silently wrong: it stops on a NaN loss, refuses a bad --ckpt_path before
writing anything, and a resumed run (also after SIGKILL) continues in its own version folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from anomalib_defectgan.cli import main as cli
from anomalib_defectgan.commands.fit import RunCSVLogger, check_resume_checkpoint, run_version
from anomalib_defectgan.data import make_synthetic_steel
from anomalib_defectgan.errors import CheckpointError
from anomalib_defectgan.models.defect_gan.loss import Critics, DefectGanLoss
from anomalib_defectgan.models.defect_gan.passes import GanPasses
from tests.test_defect_gan_training import FAST, TINY

EVERY_2_STEPS = ["--trainer.callbacks.every_n_train_steps", "2"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world") / "steel"
    make_synthetic_steel(out, size=64, per_class=1, good_per_grade=3, seed=0, progress=False)
    return out / "manifest.csv"


@pytest.fixture(scope="module")
def genuine_ckpt(world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``last.ckpt`` of a 2-step fit."""
    root = tmp_path_factory.mktemp("genuine")
    assert fit(world, root, 2) == 0
    return root / "version_0" / "checkpoints" / "last.ckpt"


def fit(world: Path, root: Path, steps: int, *extra: str) -> int:
    return cli(fit_command(world, root, steps, *extra))


def fit_command(world: Path, root: Path, steps: int, *extra: str) -> list[str]:
    return ["fit", "-c", str(TINY), "--data.manifest", str(world), "--trainer.max_steps", str(steps),
            "--trainer.default_root_dir", str(root), *FAST, *extra]


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The one ``defectgan fit: error:`` line on stderr."""
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("defectgan fit")]
    assert len(lines) == 1, lines
    return lines[0]


def train_steps(run: Path) -> list[int]:
    metrics = pd.read_csv(run / "metrics.csv")
    if "train/g_total" not in metrics:
        return []
    return metrics.loc[metrics["train/g_total"].notna(), "step"].astype(int).tolist()


# ------------------------------------------------------------------ divergence
def test_nan_loss_stops_fit_and_keeps_the_last_good_checkpoint(world: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    original = DefectGanLoss.generator_losses
    calls = []  # one call per training step: the fourth is step 3

    def nan_at_step_3(self: DefectGanLoss, f: GanPasses, critics: Critics,
                      ramp: torch.Tensor | float = 1.0) -> dict[str, torch.Tensor]:
        losses = original(self, f, critics, ramp)
        calls.append(1)
        if len(calls) == 4:
            losses["rec"] = losses["rec"] * float("nan")
        return losses

    monkeypatch.setattr(DefectGanLoss, "generator_losses", nan_at_step_3)
    root = tmp_path / "run"
    # save_on_exception would checkpoint the diverged state: the guard must switch it off
    assert fit(world, root, 10, *EVERY_2_STEPS, "--trainer.callbacks.save_on_exception", "true") == 2
    run = root / "version_0"
    line = error_line(capsys)
    assert "loss 'g_total' is nan at step 3" in line and "'rec'" in line
    assert f"Last good checkpoint: {run / 'checkpoints' / 'last.ckpt'}" in line
    assert sorted(path.name for path in (run / "checkpoints").iterdir()) == ["epoch=0-step=2.ckpt", "last.ckpt"]
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    step_2 = torch.load(run / "checkpoints" / "epoch=0-step=2.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == step_2["global_step"] == 2
    for name, value in last["state_dict"].items():
        assert torch.equal(value, step_2["state_dict"][name]), name
        assert not value.is_floating_point() or bool(torch.isfinite(value).all()), name
    assert not (run / "generator").exists(), "no generator exported from a diverged run"
    assert not (run / "samples" / "final.png").exists() and not (run / "samples" / "step_0000004.png").exists()
    assert (run / "samples" / "step_0000003.png").is_file()
    assert check_resume_checkpoint(run / "checkpoints" / "last.ckpt") == 2, "the kept checkpoint resumes"


def test_diverging_learning_rate_stops_at_the_first_step(world: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert fit(world, tmp_path / "run", 20, "--model.init_args.lr", "1e8") == 2
    line = error_line(capsys)
    assert "is nan at step 0" in line and "'g_total'" in line and "No checkpoint was written yet." in line
    run = tmp_path / "run" / "version_0"
    assert not (run / "checkpoints").exists() and not (run / "generator").exists()


# ------------------------------------------------------------------ --ckpt_path checked first
def _foreign_lightning_ckpt(folder: Path) -> Path:
    class Other(pl.LightningModule):
        def __init__(self, width: int = 3) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.layer = torch.nn.Linear(width, 1)

        def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
            return self.layer(batch).sum()

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    trainer = pl.Trainer(max_steps=1, default_root_dir=folder, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu")
    trainer.fit(Other(), torch.utils.data.DataLoader(torch.rand(2, 3)))
    return next((folder / "checkpoints").glob("*.ckpt"))


def _bad_ckpt(case: str, folder: Path, genuine: Path) -> Path:
    path = folder / f"{case}.ckpt"
    if case == "missing":
        return path
    if case == "safetensors":
        path = folder / "generator.safetensors"
        save_file({"weight": torch.zeros(2)}, path)
    elif case == "truncated":
        data = genuine.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif case == "text":
        path.write_text("hello")
    elif case == "plain_dict":
        torch.save({"state_dict": {"model.weight": torch.zeros(2)}, "hyper_parameters": {"backbone": "resnet18"}}, path)
    elif case == "pickled_object":
        torch.save({"state_dict": {}, "config": pd.Timestamp(0)}, path)
    elif case == "weights_only":
        checkpoint = torch.load(genuine, map_location="cpu", weights_only=True)
        del checkpoint["optimizer_states"], checkpoint["loops"]
        torch.save(checkpoint, path)
    elif case == "other_module":
        return _foreign_lightning_ckpt(folder / "other")
    elif case == "directory":
        path.mkdir()
    return path


@pytest.mark.parametrize(("case", "problem"), [
    ("missing", "checkpoint not found"),
    ("safetensors", "a safetensors file holds weights only"),
    ("truncated", "truncated or corrupt"),
    ("text", "not a torch checkpoint"),
    ("plain_dict", "not a DefectGan checkpoint"),
    ("pickled_object", "weights_only=True load refuses to unpickle"),
    ("weights_only", "cannot resume training"),
    ("other_module", "not a DefectGan checkpoint"),
    ("directory", "not a file"),
])
def test_bad_ckpt_path_is_refused_before_anything_is_written(case: str, problem: str, world: Path, tmp_path: Path,
                                                             genuine_ckpt: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    bad = _bad_ckpt(case, tmp_path, genuine_ckpt)
    capsys.readouterr()
    root = tmp_path / "run"
    assert fit(world, root, 4, "--ckpt_path", str(bad)) == 2
    line = error_line(capsys)
    assert line.startswith(f"defectgan fit: error: {bad}: ") and problem in line, line
    assert not root.exists(), "nothing written under default_root_dir"


def test_the_checkpoints_fit_writes_pass_the_check(genuine_ckpt: Path) -> None:
    assert check_resume_checkpoint(genuine_ckpt) == 2
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        check_resume_checkpoint(genuine_ckpt.with_name("nothing.ckpt"))


# ------------------------------------------------------------------ resume in the same version folder
def test_resume_continues_in_the_same_version_folder(world: Path, tmp_path: Path) -> None:
    root = tmp_path / "run"
    assert fit(world, root, 2) == 0
    run = root / "version_0"
    assert fit(world, root, 4, "--ckpt_path", str(run / "checkpoints" / "last.ckpt")) == 0
    assert sorted(path.name for path in root.iterdir()) == ["version_0"], "no version_1"
    resumed = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert resumed["global_step"] == 4
    assert train_steps(run) == [0, 1, 2, 3], "metrics.csv keeps the first part and continues"
    assert pd.read_csv(run / "metrics.csv")["classifier/train_accuracy"].notna().sum() == 1, "V trained once"
    assert len(list(run.glob("events.out.tfevents.*"))) == 2
    assert (run / "samples" / "step_0000004.png").is_file() and (run / "generator" / "generator.safetensors").is_file()
    assert "max_steps: 4" in (run / "config.yaml").read_text()


def test_run_version_only_inside_the_root(tmp_path: Path) -> None:
    assert run_version(tmp_path / "version_3" / "checkpoints" / "last.ckpt", tmp_path) == 3
    assert run_version(tmp_path / "final" / "last.ckpt", tmp_path) is None
    assert run_version(tmp_path / "version_3" / "last.ckpt", tmp_path / "elsewhere") is None
    assert run_version(tmp_path / "version_3", tmp_path) is None


def test_resumed_csv_drops_rows_logged_after_the_checkpoint_and_a_torn_last_line(tmp_path: Path) -> None:
    run = tmp_path / "version_0"
    run.mkdir()
    (run / "metrics.csv").write_text("epoch,step,train/g_total\n0,0,1.0\n0,1,2.0\n0,2,3.0\n0,3,4.0\n0,4")
    logger = RunCSVLogger(tmp_path, version=0, resume_step=3)
    logger.log_metrics({"train/g_total": 5.0, "epoch": 0}, step=3)
    logger.save()
    assert (run / "metrics.csv").read_text().splitlines() == [
        "epoch,step,train/g_total", "0,0,1.0", "0,1,2.0", "0,2,3.0", "0,3,5.0"]


def _pause(process: subprocess.Popen) -> None:
    """SIGSTOP ``process`` and wait until it is stopped, so that its files hold still."""
    process.send_signal(signal.SIGSTOP)
    stat = Path(f"/proc/{process.pid}/stat")
    while stat.is_file() and stat.read_text().rsplit(")", 1)[1].split()[0] not in {"T", "t", "Z"}:
        time.sleep(0.01)


def _flushed_train_steps(run: Path) -> list[int]:
    return train_steps(run) if (run / "metrics.csv").is_file() else []


def test_sigkill_then_resume_continues_the_run(world: Path, tmp_path: Path) -> None:
    """Killed (paused first, so its files hold still) once metrics.csv reaches its last checkpoint."""
    root = tmp_path / "run"
    run = root / "version_0"
    last = run / "checkpoints" / "last.ckpt"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "anomalib_defectgan.cli", *fit_command(world, root, 1000, *EVERY_2_STEPS)]
    log = tmp_path / "killed_fit.log"
    with log.open("wb") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        checkpointed = False
        while not checkpointed and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.3)
            _pause(process)
            checkpointed = last.is_file() and check_resume_checkpoint(last) - 1 in _flushed_train_steps(run)
            if not checkpointed:
                process.send_signal(signal.SIGCONT)
        assert checkpointed, f"no checkpoint before the kill (exit code {process.poll()}): {log.read_text()[-2000:]}"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    step = check_resume_checkpoint(last)
    assert step >= 2
    assert "ModelCheckpoint with manual optimization" not in log.read_text(), "Lightning's note is silenced"
    assert fit(world, root, step + 2, *EVERY_2_STEPS, "--ckpt_path", str(last)) == 0
    assert sorted(path.name for path in root.iterdir()) == ["version_0"], "no version_1"
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == step + 2
    assert train_steps(run) == list(range(step + 2)), "every step once: none lost, none logged twice"


def test_fit_writes_progress_lines_to_a_log(world: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """stderr is not a terminal here (as in a log file): one line per step of a 4-step run."""
    assert fit(world, tmp_path / "run", 4) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in lines] == ["1/4", "2/4", "3/4", "4/4"], lines
    assert all(" it/s" in line and "g_total " in line and "d_total " in line for line in lines), lines
    assert "ETA 0:00:00" in lines[-1]
