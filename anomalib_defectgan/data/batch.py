"""Batch types of the GAN datamodule.

anomalib's batches carry only boolean labels and masks; the GAN needs defect-class and grade
ids and to know what kind of mask a defect has, so it gets its own small dataclasses. Lightning
moves dataclasses of tensors to the device as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch
from torch import Tensor

MASK_KIND_IDS = {"none": 0, "box": 1, "pixel": 2}


@dataclass
class DefectBatch:
    """Images of one role (donors, canvases or goods).

    Attributes:
        image: ``[B, C, H, W]`` float in [0, 1], C = 1 or 3.
        mask: ``[B, 1, H, W]`` float in {0, 1}; zeros for good images.
        defect_class: ``[B]`` long, index into the datamodule's ``classes`` (0 = ``good``).
        grade: ``[B]`` long, index into the datamodule's ``grades``.
        mask_kind: ``[B]`` long, :data:`MASK_KIND_IDS` (0 none, 1 box, 2 pixel).
        image_path: Source file of each image.
    """

    image: Tensor
    mask: Tensor
    defect_class: Tensor
    grade: Tensor
    mask_kind: Tensor
    image_path: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.image.shape[0])

    @classmethod
    def collate(cls, items: list[DefectBatch]) -> DefectBatch:
        """Stack per-sample items (tensors without a batch dimension) into one batch."""
        return cls(
            image=torch.stack([item.image for item in items]),
            mask=torch.stack([item.mask for item in items]),
            defect_class=torch.stack([item.defect_class for item in items]),
            grade=torch.stack([item.grade for item in items]),
            mask_kind=torch.stack([item.mask_kind for item in items]),
            image_path=[p for item in items for p in item.image_path],
        )

    def to(self, device: torch.device | str) -> DefectBatch:
        """Move every tensor to ``device``."""
        return DefectBatch(**{f.name: (getattr(self, f.name).to(device) if isinstance(getattr(self, f.name), Tensor)
                                       else getattr(self, f.name)) for f in fields(self)})


@dataclass
class GanBatch:
    """One GAN training batch: defect donors, good canvases (any grade) and good images.

    Attributes:
        donor: Crops centred on a defect.
        canvas: Good crops of the same size, the targets a defect is painted onto.
        good: Good crops for the identity loss.
    """

    donor: DefectBatch
    canvas: DefectBatch
    good: DefectBatch

    def to(self, device: torch.device | str) -> GanBatch:
        """Move every tensor to ``device``."""
        return GanBatch(self.donor.to(device), self.canvas.to(device), self.good.to(device))
