"""The command-line options of :class:`~anomalib_defectgan.generators.DefectTransferGenerator`.

``defectgan generate``, ``defectgan benchmark new-grade`` and ``defectgan benchmark gan-quality``
expose the same generator settings; they are declared here once, with one wording and one set
of defaults.
"""

from __future__ import annotations

import argparse
from typing import Any

from anomalib_defectgan.data.blending import CHANGE_THRESHOLD
from anomalib_defectgan.generators.defect_transfer import MASK_SOURCES, PLACEMENTS
from anomalib_defectgan.models.defect_gan.torch_model import CHANGE_REGIONS, COMPOSITE_MODES


def add_transfer_options(parser: argparse.ArgumentParser, who: str, masks: bool = True,
                         strength: bool = False, composite: bool = False, placement: bool = True) -> None:
    """Add ``--window``, ``--change-scale``, ``--max-gain``, ``--critic-redraws`` and the optional groups below.

    Args:
        parser: The command's parser.
        who: What the options apply to, prefixed to each help text (e.g. ``"defectgan arm"``).
        masks: Also add the options that decide which pixels a transfer changes and labels.
        strength: Also add ``--min-strength``.
        composite: Also add ``--composite-mode`` and ``--change-region``.
        placement: Also add ``--placement`` (not for paintings at fixed positions).
    """
    if masks:
        parser.add_argument("--mask-source", choices=sorted(MASK_SOURCES), default="donor",
                            help=f"{who}: pixels a transfer may change: the donor's label (default) or the GAN's "
                                 "own mask")
        parser.add_argument("--min-change", type=float, default=CHANGE_THRESHOLD,
                            help=f"{who}: leave pixels the transfer changed by less than this (images in [0, 1]) "
                                 "unpainted and unlabelled (default: %(default).4f = 2/255, so the mask is the "
                                 "pixels that changed)")
    parser.add_argument("--window", type=int, default=None,
                        help=f"{who}: side (px) of the window the GAN paints on (default: its training crop "
                             "size); larger windows paint larger donors whole")
    if placement:
        parser.add_argument("--placement", choices=PLACEMENTS, default="defect",
                            help=f"{who}: where a defect lands: defect (its bounding box uniformly inside the "
                                 "image, as CutPaste places donors; default) or window (the GAN's window uniformly "
                                 "inside the image, the defect at its centre)")
    parser.add_argument("--change-scale", type=float, default=1.0,
                        help=f"{who}: scale of a composite-path GAN's learned change, in [0, 1]: the output is "
                             "composite + scale * (G - composite) (default: %(default)s, G as trained; 0: the "
                             "composite alone)")
    parser.add_argument("--max-gain", type=float, default=None,
                        help=f"{who}: a composite-path GAN's transfer may be at most this many times as strong "
                             "as its composite (L2 change to the canvas); G's learned change is scaled down "
                             "where it would be stronger (>= 1; default: no bound)")
    if strength:
        parser.add_argument("--min-strength", type=float, default=1.0,
                            help=f"{who}: scale each transfer's change by a factor drawn from [this, 1], so some "
                                 "synthetic defects are faint (default: %(default)s, as painted)")
    if composite:
        parser.add_argument("--composite-mode", choices=COMPOSITE_MODES, default=None,
                            help=f"{who}: how a composite-path GAN puts the donor's defect on the canvas, "
                                 "overriding its generator.json: paste (the donor's own pixels around the defect; "
                                 "for donors of the same material), adaptive / residual (the defect's change "
                                 "only; for a new grade) or matched (that change fitted to the new material) "
                                 "(default: the GAN's own)")
        parser.add_argument("--change-region", choices=CHANGE_REGIONS, default=None,
                            help=f"{who}: where a composite-path GAN may change its composite, overriding its "
                                 "generator.json: halo (the pasted defect and its feathered edge) or defect (the "
                                 "donor's defect pixels only: no plate around a thin defect) (default: the GAN's "
                                 "own)")
    parser.add_argument("--critic-redraws", type=int, default=0,
                        help=f"{who}: redraw a transfer the GAN's critic V does not recognise as the donor's "
                             "class, up to this many times (default: %(default)s)")


TRANSFER_OPTIONS = ("mask_source", "min_change", "window", "placement", "change_scale", "max_gain", "min_strength",
                    "composite_mode", "change_region", "critic_redraws")
"""The :class:`DefectTransferGenerator` settings that :func:`add_transfer_options` may add."""


def transfer_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings :func:`add_transfer_options` added to ``args``, as ``DefectTransferGenerator`` keywords."""
    return {name: getattr(args, name) for name in TRANSFER_OPTIONS if hasattr(args, name)}
