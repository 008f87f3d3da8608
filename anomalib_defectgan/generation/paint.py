"""The paint loop of ``defectgan generate``: items in batches, each from its own seed, on every rank.

Item ``i`` draws every random choice from a generator seeded by :func:`item_seed` ``(seed, i)``,
so it gets the same defect in whatever batch it lands. The items are cut into the batches one
process paints; the batches not finished yet are dealt round robin among the ranks of a
:mod:`torch.distributed` group (one rank in a plain process). A DefectGAN's float results differ
in the last bits with the batch it runs in, so a resumed DefectGAN batch is repainted whole, as
the uninterrupted run painted it, and only its unfinished items are written.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from anomalib_defectgan.data.image_io import read_image
from anomalib_defectgan.generation.store import GenerateStore
from anomalib_defectgan.utils import distributed
from anomalib_defectgan.utils.progress import progress_bar


def item_seed(seed: int, index: int) -> int:
    """The seed of item ``index``'s random draws: a function of ``(seed, index)`` only (63 bits)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{index}".encode()).digest()[:8], "big") >> 1


def paint_items(generator: Any, store: GenerateStore, names: Sequence[str], sources: Sequence[Path], channels: int,
                device: str, seed: int, batch_size: int, kind: str, progress: bool = True) -> None:
    """Paint and write every unfinished item; an item whose mask came out empty gets no record.

    Args:
        generator: A generator with ``paint_seeded(batch, seeds)`` and ``last_info`` (CutPaste, DefectGAN).
        store: The run's output folder.
        names: Every item's name.
        sources: Every item's good image.
        channels: Channels the good images are read with.
        device: Where the batches are painted.
        seed: The run's seed (:func:`item_seed`).
        batch_size: Images per generator call.
        kind: The generator's kind, written to each record; ``defectgan`` batches are repainted whole.
        progress: Show a progress bar (on rank 0).
    """
    import torch

    rank = distributed.world().rank
    batches = [range(start, min(start + batch_size, len(names))) for start in range(0, len(names), batch_size)]
    pending = [chunk for chunk in batches if not all(store.is_finished(names[i]) for i in chunk)]
    distributed.barrier()  # every rank has listed the pending batches before any writes a record
    mine = distributed.shard(pending)
    bar = progress_bar(sum(len(chunk) for chunk in mine), "generate", "img", disable=not progress or rank != 0)
    with distributed.together():  # every rank has painted its share before rank 0 writes the manifest
        for chunk in mine:
            todo = {i for i in chunk if not store.is_finished(names[i])}
            bar.update(len(chunk) - len(todo))
            if not todo:
                continue
            paint = list(chunk) if kind == "defectgan" else sorted(todo)
            images = {i: read_image(sources[i], channels) for i in paint}
            by_size: dict[tuple[int, ...], list[int]] = {}
            for i in paint:
                by_size.setdefault(images[i].shape, []).append(i)
            for group in by_size.values():
                batch = torch.stack([torch.from_numpy(np.array(images[i])).permute(2, 0, 1).float() / 255.0
                                     for i in group]).to(device)
                with torch.no_grad():
                    augmented, masks = generator.paint_seeded(batch, [item_seed(seed, i) for i in group])
                for j, i in enumerate(group):
                    info = generator.last_info[j]
                    if i not in todo:
                        continue
                    bar.update(1)
                    if info is None or not masks[j].any():
                        continue  # no record: reported (and retried by a rerun) as an empty mask
                    # keys sorted as in a record read back on a resume: the manifest's columns
                    record = dict(sorted({**info, "normal_path": str(Path(sources[i]).resolve()),
                                          "generator": kind, "seed": seed}.items()))
                    store.write_item(names[i], augmented[j].clamp(0, 1).permute(1, 2, 0).cpu().numpy(),
                                     masks[j, 0].cpu().numpy() > 0.5, record)
        bar.close()
