"""The training sample grid: donor | canvas | pasted | transfer | mask | restored, one row per pair."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor

from anomalib_defectgan.data.batch import GanBatch
from anomalib_defectgan.models.defect_gan.passes import SamplePasses

logger = logging.getLogger(__name__)


def write_sample_grid(samples: SamplePasses, path: Path, count: int) -> Tensor:
    """Write the grid of the first ``count`` pairs as a PNG at ``path``; returns it ``[C, H, W]`` in [0, 1].

    ``pasted`` is the donor's defect pasted onto the canvas (the canvas itself on the code path).
    """
    from torchvision.utils import make_grid

    from anomalib_defectgan.data.image_io import write_image

    count = min(count, len(samples.donor))
    channels = samples.donor.shape[1]
    columns = [samples.donor, samples.canvas, samples.pasted, samples.transfer,
               samples.mask.expand(-1, channels, -1, -1), samples.restored]
    tiles = torch.stack([c[:count].float().cpu() for c in columns], dim=1).flatten(0, 1)
    grid = make_grid(tiles, nrow=len(columns), padding=2, pad_value=1.0).clamp(0, 1)
    array = (grid * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    write_image(path, array[..., 0] if channels == 1 else np.ascontiguousarray(array))
    return grid


def log_dir(trainer: pl.Trainer) -> Path:
    """The run's folder (``version_N``). A collective under DDP: every rank must ask."""
    return Path(trainer.log_dir or trainer.default_root_dir)


class SampleGrids(Callback):
    """Write the EMA model's sample grid to ``<log_dir>/samples/`` and TensorBoard during fit.

    The grid's batch is the first validation batch (the first training batch without a
    validation loader), fixed for the whole run so grids are comparable. A grid is written every
    ``every`` iterations and once at the end (``final.png``), by rank 0.

    Args:
        every: Iterations between grids (0: only the final one).
        count: Rows (donor/canvas pairs) of a grid.
    """

    def __init__(self, every: int, count: int) -> None:
        self.every = int(every)
        self.count = int(count)
        self.batch: GanBatch | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Fix the grid's batch from the validation loader."""
        datamodule = getattr(trainer, "datamodule", None)
        if self.batch is None and datamodule is not None and hasattr(datamodule, "val_dataloader"):
            self.batch = next(iter(datamodule.val_dataloader()), None)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: GanBatch, batch_idx: int) -> None:
        """Keep a batch if none was fixed; write a grid every ``every`` iterations."""
        if self.batch is None:
            self.batch = batch
        if self.every > 0 and trainer.global_step % self.every == 0:
            folder = log_dir(trainer)
            if trainer.is_global_zero:
                self.write(trainer, pl_module, f"step_{trainer.global_step:07d}", folder)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Write ``final.png``."""
        folder = log_dir(trainer)
        if trainer.is_global_zero:
            path = self.write(trainer, pl_module, "final", folder)
            if path is not None:
                logger.info("sample grid: %s", path)

    def write(self, trainer: pl.Trainer, pl_module: Any, name: str, folder: Path) -> Path | None:
        """Write the grid ``<folder>/samples/<name>.png`` and log it to every TensorBoard logger."""
        if self.batch is None:
            return None
        path = folder / "samples" / f"{name}.png"
        grid = write_sample_grid(pl_module.sample(self.batch.to(pl_module.device)), path, self.count)
        for log in trainer.loggers:
            experiment = getattr(log, "experiment", None)
            if hasattr(experiment, "add_image"):
                experiment.add_image("samples", grid, global_step=trainer.global_step)
        return path
