"""The training sample grid: donor | canvas | pasted | transfer | mask | restored, one row per pair."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from anomalib_defectgan.models.defect_gan.passes import SamplePasses


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
