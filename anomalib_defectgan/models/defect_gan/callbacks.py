"""Lightning callbacks of ``defectgan fit``."""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

from anomalib_defectgan.errors import TrainingDivergedError
from anomalib_defectgan.utils.progress import clock


class StopOnNonFiniteLoss(Callback):
    """Stop fit at the first step whose logged training losses are not all finite.

    It reads the loss terms the model has just logged under ``prefix`` (the values are already
    computed) and checks them as one stacked tensor: one device-to-host copy per step, where
    Lightning already copies the progress-bar losses to the host every step. It runs before any
    :class:`~lightning.pytorch.callbacks.ModelCheckpoint` (Lightning calls those last) and before the
    model's :class:`~anomalib_defectgan.models.defect_gan.sample_grid.SampleGrids` (a model's
    ``configure_callbacks`` come after the Trainer's), so the diverged state is neither checkpointed
    nor drawn; ``save_on_exception`` of the checkpoint callbacks is switched off before it raises,
    and ``on_train_end`` (the final grid, the generator export) does not run after an exception.

    Args:
        prefix: Prefix of the logged loss names to check; it is dropped from the names reported.

    Raises:
        TrainingDivergedError: From ``on_train_batch_end``, naming the step, the non-finite terms
            (totals first) and the last checkpoint written before.
    """

    def __init__(self, prefix: str = "train/") -> None:
        self.prefix = prefix

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        """Raise :class:`TrainingDivergedError` when a loss logged by this step is NaN or infinite."""
        losses = {name.removeprefix(self.prefix): value for name, value in trainer.callback_metrics.items()
                  if name.startswith(self.prefix) and isinstance(value, torch.Tensor) and value.numel() == 1}
        if not losses:
            return
        device = next(iter(losses.values())).device
        values = torch.stack([value.detach().reshape(()).float().to(device) for value in losses.values()]).cpu()
        finite = torch.isfinite(values)
        if trainer.strategy.reduce_boolean_decision(bool(finite.all()), all=True):
            return
        bad = {name: float(value) for (name, value), ok in zip(losses.items(), finite.tolist(), strict=True)
               if not ok}
        terms = sorted(bad, key=lambda name: (not name.endswith("_total"), name)) or ["(on another process)"]
        kinds = {"nan" if math.isnan(value) else "inf" for value in bad.values()}
        for callback in trainer.checkpoint_callbacks:
            callback.save_on_exception = False
        raise TrainingDivergedError(max(0, trainer.global_step - 1), terms,
                                    "/".join(sorted(kinds)) if kinds else "nan/inf", _last_checkpoint(trainer))


def _last_checkpoint(trainer: pl.Trainer) -> str | None:
    """The checkpoint written last by the run's checkpoint callbacks, or the one it resumed from."""
    written = [path for callback in trainer.checkpoint_callbacks
               for path in (getattr(callback, "last_model_path", ""), getattr(callback, "best_model_path", ""))
               if path and os.path.isfile(path)]
    if written:
        return max(written, key=os.path.getmtime)
    resumed = trainer.ckpt_path
    return str(resumed) if resumed and os.path.isfile(resumed) else None


class ProgressLog(Callback):
    """One line per N steps on stderr when it is not a terminal (a log file, a cluster job).

    ``step 350/4800 (7%) 2.1 it/s ETA 0:35:12 g_total 0.931 d_total 1.204 rec 0.041``: Lightning's
    progress bar redraws one terminal line and shows nothing useful in a redirected log, so this
    writes plain lines there, about 20 per run and at least every 50 steps. In a terminal it is
    silent and the progress bar does the job.

    Args:
        every_n_steps: Steps between lines (None: ``max_steps // 20``, clipped to 1..50).
        force: Write even when stderr is a terminal.
    """

    def __init__(self, every_n_steps: int | None = None, force: bool = False) -> None:
        self.every_n_steps = every_n_steps
        self.force = force
        self._start: tuple[float, int] | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Remember where timing starts (a resumed run counts from its checkpoint's step)."""
        self._start = (time.monotonic(), trainer.global_step)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        """Write the line of this step when it is due."""
        if self._start is None or not trainer.is_global_zero or (sys.stderr.isatty() and not self.force):
            return
        step, total = trainer.global_step, trainer.max_steps
        every = self.every_n_steps or max(1, min(50, total // 20 if total > 0 else 50))
        if step % every and step != total:
            return
        elapsed, done = time.monotonic() - self._start[0], step - self._start[1]
        rate = done / elapsed if elapsed > 0 else 0.0
        parts = [f"step {step}/{total} ({100 * step / total:.0f}%)" if total > 0 else f"step {step}",
                 f"{rate:.2f} it/s"]
        if total > 0 and rate > 0:
            parts.append(f"ETA {clock((total - step) / rate)}")
        losses = {name.removeprefix("train/"): value for name, value in trainer.callback_metrics.items()
                  if name.startswith("train/") and (name.endswith("_total") or name == "train/rec")}
        parts += [f"{name} {float(value):.3f}" for name, value in sorted(losses.items())]
        print(" ".join(parts), file=sys.stderr, flush=True)
