"""Lightning callbacks of ``defectgan fit``."""

from __future__ import annotations

import math
import os
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

from anomalib_defectgan.errors import TrainingDivergedError


class StopOnNonFiniteLoss(Callback):
    """Stop fit at the first step whose logged training losses are not all finite.

    It reads the loss terms the model has just logged under ``prefix`` (the values are already
    computed) and checks them as one stacked tensor: one device-to-host copy per step, where
    Lightning already copies the progress-bar losses to the host every step. It runs before any
    :class:`~lightning.pytorch.callbacks.ModelCheckpoint` (Lightning calls those last) and before the
    model's own ``on_train_batch_end`` (sample grids), so the diverged state is neither checkpointed
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
