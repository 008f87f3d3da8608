"""CutPasteGenerator: pastes real donor defects through their masks (the strong non-GAN baseline)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.transforms.v2 import functional as tvf

from anomalib_defectgan.generators.contract import ClassSampler, as_batch, as_output, composite
from anomalib_defectgan.generators.defect_bank import DefectBank, load_bank
from anomalib_defectgan.generators.placement import Placement, overlap, sample_placement

BLENDS = ("feather", "none")


class CutPasteGenerator(nn.Module):
    """Paste a real defect from a bank onto each image, with anomaly-generator call semantics.

    Same contract as anomalib's ``PerlinAnomalyGenerator`` (see
    :mod:`anomalib_defectgan.generators.contract`), so it can replace DRAEM's ``augmenter`` or
    GLASS's ``model.augmentor``. For each chosen image: pick a class (by ``class_weights``) and a
    donor of that class, shift and flip it (:mod:`~anomalib_defectgan.generators.placement`),
    shift the donor's brightness so its background matches the target's, then blend its pixels
    in with a feathered edge. The returned mask is exactly the set of pixels that changed.
    All pixel work is torch on the images' device.

    Args:
        defect_bank: Manifest / folder of donors (see :mod:`~anomalib_defectgan.generators.defect_bank`)
            or a loaded :class:`DefectBank`.
        probability: Chance that an image gets a defect.
        classes: Use only these defect classes (None: every class in the bank).
        class_weights: Relative weight of each entry of ``classes`` (None: uniform over classes).
        seed: Seed of a private random generator (None: torch's global random state).
        blend: ``"feather"`` (soft halo of ``feather`` px around the defect) or ``"none"``.
        feather: Gaussian sigma of the feathered halo, in pixels.
        match_brightness: Shift donor pixels so their background mean equals the target's.
        rotate90: Allow quarter turns of donors (off: rolled steel is directional).
        device: Device on which to preload donor pixels (None: they follow each input's device).

    Example:
        >>> gen = CutPasteGenerator("datasets/steel/manifest.csv", probability=1.0, seed=0)
        >>> augmented, mask = gen(torch.rand(4, 1, 64, 64))  # [4,1,64,64], [4,1,64,64]
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
        device: str | torch.device | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"probability must be in [0, 1], got {probability}")
        if blend not in BLENDS:
            raise ValueError(f"blend must be one of {BLENDS}, got {blend!r}")
        self.bank = load_bank(defect_bank, classes)
        self.sampler = ClassSampler(self.bank.donor_classes, classes, class_weights)
        self.probability = probability
        self.blend = blend
        self.feather = feather
        self.match_brightness = match_brightness
        self.rotate90 = rotate90
        self.rng: torch.Generator | None = None
        self.reseed(seed)
        self.last_info: list[dict[str, Any] | None] = []
        if device is not None:
            for channels in (1, 3):
                self.bank.tensors(channels, device)

    def reseed(self, seed: int | None) -> None:
        """Restart the private random generator from ``seed`` (None: use torch's global state)."""
        self.rng = None if seed is None else torch.Generator().manual_seed(int(seed))

    def _alpha(self, mask: Tensor) -> Tensor:
        if self.blend == "none" or self.feather <= 0:
            return mask
        radius = max(1, math.ceil(2 * self.feather))
        # Zero padding first: the halo must not reflect at the crop border, and tiny crops need it.
        padded = torch.nn.functional.pad(mask[None], [radius] * 4)
        halo = tvf.gaussian_blur(padded, [2 * radius + 1] * 2, [self.feather] * 2)[0]
        return torch.maximum(mask, halo[:, radius:-radius, radius:-radius])

    def _paint(self, donor: Tensor, mask: Tensor, target: Tensor) -> Tensor:
        if not self.match_brightness:
            return donor
        background = 1.0 - mask
        if background.sum() < 1:
            background = torch.ones_like(mask)
        donor_mean = (donor * background).sum(dim=(1, 2), keepdim=True) / background.sum()
        return donor - donor_mean + target.mean(dim=(1, 2), keepdim=True)

    def _paste(self, image: Tensor, index: int) -> tuple[Tensor, Tensor, Placement]:
        """Paste donor ``index`` onto ``image`` ``[C, H, W]``; returns image, mask (may be empty), placement."""
        donor, donor_mask = self.bank.tensors(image.shape[0], image.device)[index]
        placement = sample_placement(tuple(donor.shape[-2:]), tuple(image.shape[-2:]), self.rng,
                                     rotate90=self.rotate90)
        donor = placement.orient(donor).to(image.dtype)
        donor_mask = placement.orient(donor_mask).to(image.dtype)
        (ty, tx), (dy, dx) = overlap(placement, tuple(donor.shape[-2:]), tuple(image.shape[-2:]))
        mask = donor_mask[:, dy, dx]
        result, keep = image.clone(), torch.zeros_like(image[:1])
        if mask.sum() > 0:
            target = image[:, ty, tx]
            painted = self._paint(donor[:, dy, dx], mask, target)
            result[:, ty, tx], keep[:, ty, tx] = composite(target, painted, self._alpha(mask))
        return result, keep, placement

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Add a defect to each image with ``probability``.

        Args:
            images: ``[C, H, W]`` or ``[B, C, H, W]`` float in [0, 1], C = 1 or 3.

        Returns:
            ``(augmented, mask)``: same shape/dtype/device as ``images``, and ``[(B,) 1, H, W]``
            float in {0, 1}. :attr:`last_info` then holds, per image, the donor and placement
            used (None where no defect was added).
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
                    result, keep, placement = self._paste(batch[i], index)
                    if keep.any():
                        augmented[i], masks[i] = result, keep
                        donor = self.bank.donors[index]
                        info = {"donor_path": donor.path, "donor_mask_path": donor.mask_path,
                                "defect_class": donor.defect_class, **placement.as_dict()}
                        break
            self.last_info.append(info)
        return as_output(augmented, masks, single)
