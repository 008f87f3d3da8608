"""Donor | canvas | composite | output | mask grids: what the GAN did to each pasted defect.

The rows are painted by ``DefectTransferGenerator.paint_donors`` (the code that ships), with
windows kept inside the canvas so that each row can show the whole window. The ``composite``
column is the GAN's input on the composite path (the donor's real defect pasted with
``DefectGanNet.composite``: what plain copy-paste would give); code-path generators leave it blank.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from anomalib_defectgan.data.image_contract import to_channels
from anomalib_defectgan.errors import DefectGanError

COLUMNS = ("donor", "canvas", "composite", "output", "mask")


def _grey(image: Tensor) -> np.ndarray:
    return (to_channels(image[None], 1)[0, 0].clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


def transfer_rows(generator: Any, canvases: Tensor, donors: Sequence[int]) -> list[dict[str, np.ndarray]]:
    """Paint bank donor ``donors[i]`` onto ``canvases[i]`` and cut every column at the GAN's window.

    Args:
        generator: A ``DefectTransferGenerator`` built with ``placement="window"`` and ``edge_margin=0``.
        canvases: ``[N, C, H, W]`` float in [0, 1], each at least the generator's crop size.
        donors: One bank index per canvas.

    Returns:
        One dict per painted canvas: ``COLUMNS`` -> uint8 ``[c, c]`` grey images (``composite``
        is None for a code-path generator) plus ``defect_class``.

    Raises:
        DefectGanError: The generator lets windows leave the canvas, or a canvas is too small.
    """
    size = generator.crop_size
    if generator.placement != "window" or generator.edge_margin != 0:
        raise DefectGanError("transfer_rows needs a DefectTransferGenerator with placement='window' and edge_margin=0")
    if min(canvases.shape[-2:]) < size:
        raise DefectGanError(f"canvases {list(canvases.shape[-2:])} are smaller than the {size}px crop")
    output, mask = generator.paint_donors(canvases, list(donors))
    gan, rows = generator.gan, []
    for i, info in enumerate(generator.last_info):
        if info is None:
            continue
        window = (slice(info["top"], info["top"] + size), slice(info["left"], info["left"] + size))
        orient = next(k for k, o in enumerate(generator.orientations)
                      if (o.flip_h, o.flip_v, o.rot90) == (info["flip_h"], info["flip_v"], info["rot90"]))
        donor, donor_mask = generator.donor_pixels(torch.tensor([donors[i]]), torch.tensor([orient]))
        canvas = canvases[i, :, window[0], window[1]]
        composite = None
        if gan.needs_donor_pixels:
            param = next(gan.parameters())
            with torch.no_grad():
                pasted, _ = gan.net.composite(to_channels(canvas[None], gan.channels).to(param),
                                              donor.to(param), donor_mask.to(param))
            composite = _grey(pasted[0])
        rows.append({"donor": _grey(donor[0]), "canvas": _grey(canvas), "composite": composite,
                     "output": _grey(output[i, :, window[0], window[1]]),
                     "mask": (mask[i, 0, window[0], window[1]] > 0).to(torch.uint8).cpu().numpy() * 255,
                     "defect_class": info["defect_class"]})
    return rows


def transfer_grid(rows: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Write ``rows`` (from :func:`transfer_rows`) as a PNG grid, one row per transfer."""
    from anomalib_defectgan.benchmark.figures import image_grid

    return image_grid([[row[c] for c in COLUMNS] for row in rows], COLUMNS,
                      [row["defect_class"] for row in rows], Path(path), title)
