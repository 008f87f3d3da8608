"""One place that turns options into a synthetic-defect generator.

Every command and benchmark builds its generators here (``defectgan generate``, ``benchmark
new-grade``, ``benchmark gan-quality``, ``benchmark generators``, ``benchmark classifier``), so a
kind means the same generator everywhere and a setting out of range is one clear error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anomalib_defectgan.errors import DefectGanError

if TYPE_CHECKING:
    import torch
    from torch import Tensor

    from anomalib_defectgan.generators.defect_bank import DefectBank

GENERATOR_KINDS = ("perlin", "cutpaste", "nsa", "defectgan")
"""``perlin``: anomalib's ``PerlinAnomalyGenerator``; ``cutpaste``: :class:`CutPasteGenerator`
(feathered paste); ``nsa``: CutPaste with :data:`~anomalib_defectgan.generators.cut_paste.NSA_SETTINGS`
(Poisson blend, rescaled donors); ``defectgan``: :class:`DefectTransferGenerator`."""


def build_generator(
    kind: str,
    defect_bank: str | Path | DefectBank | None = None,
    checkpoint: str | Path | None = None,
    *,
    probability: float = 1.0,
    seed: int | None = None,
    classes: Sequence[str] | None = None,
    class_weights: Sequence[float] | None = None,
    device: str | torch.device | None = None,
    transfer: Mapping[str, Any] | None = None,
) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
    """The generator of ``kind``, with anomalib's Perlin call contract.

    Args:
        kind: One of :data:`GENERATOR_KINDS`.
        defect_bank: Donor defects (a bank folder, a manifest or a loaded bank); not used by ``perlin``.
        checkpoint: The trained generator folder (or file) of ``defectgan``.
        probability: Share of images that get a defect (1: every image, as the commands paint).
        seed: Seed of the generator's own random state (None: torch's global one).
        classes: Donor classes to paint (None: all in the bank); not used by ``perlin``.
        class_weights: Relative weight of each entry of ``classes``.
        device: Where the bank's tensors (and the GAN) live; not used by ``perlin``.
        transfer: Further :class:`~anomalib_defectgan.generators.DefectTransferGenerator` settings
            (``backend``, ``grade``, ``window``, the mask options, ...); only ``defectgan`` uses them.

    Raises:
        DefectGanError: An unknown kind, a missing bank or checkpoint, or a setting out of range
            (the generator's own message, without a traceback).
    """
    if kind not in GENERATOR_KINDS:
        raise DefectGanError(f"unknown generator {kind!r}; choose one of {', '.join(GENERATOR_KINDS)}")
    if kind == "perlin":
        from anomalib.data.utils.generators import PerlinAnomalyGenerator

        return PerlinAnomalyGenerator(probability=probability)
    if defect_bank is None:
        raise DefectGanError(f"the {kind} generator paints donor defects: give it a defect bank")
    try:
        if kind in ("cutpaste", "nsa"):
            from anomalib_defectgan.generators.cut_paste import NSA_SETTINGS, CutPasteGenerator

            return CutPasteGenerator(defect_bank, probability=probability, classes=classes,
                                     class_weights=class_weights, seed=seed, device=device,
                                     **(NSA_SETTINGS if kind == "nsa" else {}))
        if checkpoint is None:
            raise DefectGanError("the defectgan generator needs a trained generator (a folder written by "
                                 "`defectgan fit`, or its checkpoint)")
        from anomalib_defectgan.generators.defect_transfer import DefectTransferGenerator

        return DefectTransferGenerator(checkpoint, defect_bank, probability=probability, classes=classes,
                                       class_weights=class_weights, seed=seed, device=device, **(transfer or {}))
    except ValueError as err:  # a setting out of range: the generator's message names it
        raise DefectGanError(str(err)) from err
