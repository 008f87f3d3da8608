"""CutPasteGenerator: pastes real donor defects through their masks (the strong non-GAN baselines)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from anomalib_defectgan.data.image_contract import as_batch, as_output
from anomalib_defectgan.generators.blending import BLENDS, blend_defect, changed_mask
from anomalib_defectgan.generators.class_sampler import ClassSampler
from anomalib_defectgan.generators.defect_bank import DefectBank, load_bank
from anomalib_defectgan.generators.placement import Placement, overlap, sample_placement

#: The ``CutPasteGenerator`` settings of the NSA-style baseline (benchmark arm ``nsa``).
NSA_SETTINGS: dict[str, Any] = {"blend": "poisson", "scale_jitter": (0.7, 1.3)}


class CutPasteGenerator(nn.Module):
    """Paste a real defect from a bank onto each image, with anomaly-generator call semantics.

    Same contract as anomalib's ``PerlinAnomalyGenerator`` (see
    :mod:`anomalib_defectgan.data.image_contract`), so it can replace DRAEM's ``augmenter`` or
    GLASS's ``model.augmentor``. For each chosen image: pick a class (by ``class_weights``) and a
    donor of that class, optionally rescale it (``scale_jitter``), shift and flip it
    (:mod:`~anomalib_defectgan.generators.placement`), then blend its defect into the target
    region with :func:`~anomalib_defectgan.generators.blending.blend_defect`.

    Two baselines in one class:

    * **CutPaste** (default, ``blend="feather"``): the donor's brightness is shifted so its
      background matches the target's, and its pixels are pasted with a feathered edge.
    * **NSA-style** (``blend="poisson"``, ``scale_jitter=(0.7, 1.3)``): the donor defect, randomly
      rescaled, is Poisson-blended (gradient domain, OpenCV ``seamlessClone``) into the target, as
      in Natural Synthetic Anomalies (Schlüter et al., "Natural Synthetic Anomalies for
      Self-supervised Anomaly Detection and Localization", ECCV 2022), here with real donor
      defects instead of patches of normal images. ``"poisson_mixed"`` uses mixed gradients.

    The returned mask is exactly the set of pixels that changed: mean absolute change over
    channels of at least :data:`~anomalib_defectgan.generators.blending.CHANGE_THRESHOLD`
    (2/255, images in [0, 1]); every other pixel equals the input bit for bit. A donor whose
    paste changes nothing (e.g. its defect falls outside the image) is redrawn, up to 10 times.
    Flips and scaling run in torch on the images' device; the Poisson modes solve on the CPU.

    Args:
        defect_bank: Manifest / folder of donors (see :mod:`~anomalib_defectgan.generators.defect_bank`)
            or a loaded :class:`DefectBank`.
        probability: Chance that an image gets a defect.
        classes: Use only these defect classes (None: every class in the bank).
        class_weights: Relative weight of each entry of ``classes`` (None: uniform over classes).
        seed: Seed of a private random generator (None: torch's global random state).
        blend: One of :data:`~anomalib_defectgan.generators.blending.BLENDS`: ``"feather"`` (soft
            halo of ``feather`` px around the defect), ``"none"`` (hard edge), ``"poisson"`` or
            ``"poisson_mixed"`` (gradient-domain blending, NSA).
        feather: Gaussian sigma of the feathered halo, in pixels (``blend="feather"`` only).
        match_brightness: Shift donor pixels so their background mean equals the target's
            (``"none"``/``"feather"``; Poisson blending matches the level by itself).
        rotate90: Allow quarter turns of donors (off: rolled steel is directional).
        scale_jitter: ``(low, high)``: resize each donor crop and its mask by a factor drawn
            uniformly from this range (bilinear; the mask re-binarised at 0.5). None: no resizing.
        device: Device on which to preload donor pixels (None: they follow each input's device).

    Example:
        >>> gen = CutPasteGenerator("datasets/steel/manifest.csv", probability=1.0, seed=0)
        >>> augmented, mask = gen(torch.rand(4, 1, 64, 64))  # [4,1,64,64], [4,1,64,64]
        >>> nsa = CutPasteGenerator("datasets/steel/manifest.csv", blend="poisson", scale_jitter=(0.7, 1.3))
    """

    def __init__(
        self,
        defect_bank: str | Path | DefectBank,
        probability: float = 0.5,
        classes: Sequence[str] | None = None,
        class_weights: Sequence[float] | None = None,
        seed: int | None = None,
        blend: str = "feather",
        feather: float = 2.0,
        match_brightness: bool = True,
        rotate90: bool = False,
        scale_jitter: tuple[float, float] | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"probability must be in [0, 1], got {probability}")
        if blend not in BLENDS:
            raise ValueError(f"blend must be one of {BLENDS}, got {blend!r}")
        if scale_jitter is not None:
            if len(scale_jitter) != 2 or not 0.0 < float(scale_jitter[0]) <= float(scale_jitter[1]):
                raise ValueError(f"scale_jitter must be (low, high) with 0 < low <= high, got {scale_jitter!r}")
            scale_jitter = (float(scale_jitter[0]), float(scale_jitter[1]))
        self.bank = load_bank(defect_bank, classes)
        self.sampler = ClassSampler(self.bank.donor_classes, classes, class_weights)
        self.probability = probability
        self.blend = blend
        self.feather = feather
        self.match_brightness = match_brightness
        self.rotate90 = rotate90
        self.scale_jitter = scale_jitter
        self.rng: torch.Generator | None = None
        self.reseed(seed)
        self.last_info: list[dict[str, Any] | None] = []
        if device is not None:
            for channels in (1, 3):
                self.bank.tensors(channels, device)

    def reseed(self, seed: int | None) -> None:
        """Restart the private random generator from ``seed`` (None: use torch's global state)."""
        self.rng = None if seed is None else torch.Generator().manual_seed(int(seed))

    def _rescale(self, donor: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, float]:
        """Resize a donor crop and its mask by a factor drawn from ``scale_jitter`` (1.0 without)."""
        if self.scale_jitter is None:
            return donor, mask, 1.0
        low, high = self.scale_jitter
        scale = low + (high - low) * float(torch.rand(1, generator=self.rng))
        size = [max(1, round(n * scale)) for n in donor.shape[-2:]]
        if size == list(donor.shape[-2:]):
            return donor, mask, scale
        antialias = scale < 1.0
        donor = F.interpolate(donor[None], size=size, mode="bilinear", align_corners=False,
                              antialias=antialias)[0].clamp(0.0, 1.0)
        mask = F.interpolate(mask[None], size=size, mode="bilinear", align_corners=False, antialias=antialias)[0]
        return donor, (mask >= 0.5).to(mask.dtype), scale

    def _paste(self, image: Tensor, index: int) -> tuple[Tensor, Tensor, Placement, float]:
        """Paste donor ``index`` onto ``image`` ``[C, H, W]``; returns image, mask (may be empty), placement, scale."""
        donor, donor_mask = self.bank.tensors(image.shape[0], image.device)[index]
        donor, donor_mask, scale = self._rescale(donor.to(image.dtype), donor_mask.to(image.dtype))
        placement = sample_placement(tuple(donor.shape[-2:]), tuple(image.shape[-2:]), self.rng,
                                     rotate90=self.rotate90)
        donor, donor_mask = placement.orient(donor), placement.orient(donor_mask)
        (ty, tx), (dy, dx) = overlap(placement, tuple(donor.shape[-2:]), tuple(image.shape[-2:]))
        mask = donor_mask[:, dy, dx]
        result, keep = image.clone(), torch.zeros_like(image[:1])
        if mask.sum() > 0:
            target = image[:, ty, tx]
            painted = blend_defect(target, donor[:, dy, dx], mask, self.blend, feather=self.feather,
                                   match_brightness=self.match_brightness)
            result[:, ty, tx], keep[:, ty, tx] = painted, changed_mask(painted, target)
        return result, keep, placement, scale

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Add a defect to each image with ``probability``.

        Args:
            images: ``[C, H, W]`` or ``[B, C, H, W]`` float in [0, 1], C = 1 or 3.

        Returns:
            ``(augmented, mask)``: same shape/dtype/device as ``images``, and ``[(B,) 1, H, W]``
            float in {0, 1}, exactly the pixels that changed. :attr:`last_info` then holds, per
            image, the donor, its ``scale`` and placement used (None where no defect was added).
        """
        batch, single = as_batch(images)
        augmented = batch.clone()
        masks = torch.zeros_like(batch[:, :1])
        self.last_info = []
        for i in range(batch.shape[0]):
            info = None
            if float(torch.rand(1, generator=self.rng)) < self.probability:
                for _ in range(10):  # a donor cropped at the border may lose its defect: redraw
                    index = self.sampler.sample(self.rng)
                    result, keep, placement, scale = self._paste(batch[i], index)
                    if keep.any():
                        augmented[i], masks[i] = result, keep
                        donor = self.bank.donors[index]
                        info = {"donor_path": donor.path, "donor_mask_path": donor.mask_path,
                                "defect_class": donor.defect_class, "scale": scale, **placement.as_dict()}
                        break
            self.last_info.append(info)
        return as_output(augmented, masks, single)

    def paint_seeded(self, images: Tensor, seeds: Sequence[int]) -> tuple[Tensor, Tensor]:
        """:meth:`forward`, with image ``i`` drawing every random choice from a generator seeded ``seeds[i]``.

        Its result then depends on its seed only, not on :attr:`rng` (left as it was) or on the
        other images of the batch, so an image gets the same defect in any batch (``defectgan generate``).
        """
        batch, single = as_batch(images)
        if len(seeds) != batch.shape[0]:
            raise ValueError(f"need one seed per image: {len(seeds)} seeds for {batch.shape[0]} images")
        shared, outputs, infos = self.rng, [], []
        try:
            for image, seed in zip(batch, seeds, strict=True):
                self.reseed(seed)
                outputs.append(self(image[None]))
                infos += self.last_info
        finally:
            self.rng = shared
        self.last_info = infos
        augmented, masks = (torch.cat(parts) for parts in zip(*outputs, strict=True))
        return as_output(augmented, masks, single)
