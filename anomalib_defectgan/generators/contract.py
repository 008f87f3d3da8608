"""The call contract shared by every synthetic-defect generator (anomalib's Perlin contract).

``gen(images) -> (augmented, mask)``: ``images`` is ``[C, H, W]`` or ``[B, C, H, W]`` float in
[0, 1] with C = 1 or 3; ``augmented`` has the same shape, dtype and device; ``mask`` is
``[1, H, W]`` or ``[B, 1, H, W]`` float in {0, 1}. An image not chosen (``probability``) comes back
unchanged with an empty mask. Pixels outside the mask are never changed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from anomalib_defectgan.data.image_contract import check_pixel_range


def as_batch(images: Tensor) -> tuple[Tensor, bool]:
    """Check ``images`` and return it as ``[B, C, H, W]`` plus whether it was a single image.

    Args:
        images: ``[C, H, W]`` or ``[B, C, H, W]`` floating tensor, C = 1 or 3.

    Raises:
        TypeError: Not a floating-point tensor.
        ValueError: Wrong number of dimensions or channels, an empty image, or pixels that are
            NaN, infinite or outside [0, 1] (:func:`check_pixel_range`).
    """
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if not images.is_floating_point():
        raise TypeError(f"images must be floating point in [0, 1], got dtype {images.dtype}")
    if images.ndim not in (3, 4):
        raise ValueError(f"images must be [C, H, W] or [B, C, H, W], got shape {tuple(images.shape)}")
    single = images.ndim == 3
    batch = images.unsqueeze(0) if single else images
    if batch.shape[1] not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels, got shape {tuple(images.shape)}")
    if batch.shape[-2] == 0 or batch.shape[-1] == 0:
        raise ValueError(f"images must have a height and width of at least 1 pixel, got shape {tuple(images.shape)}")
    check_pixel_range(batch)
    return batch, single


def as_output(augmented: Tensor, mask: Tensor, single: bool) -> tuple[Tensor, Tensor]:
    """Undo :func:`as_batch`: drop the batch dimension again for a single input image."""
    return (augmented[0], mask[0]) if single else (augmented, mask)


class ClassSampler:
    """Draws defect classes by weight, then a donor index uniformly within the class.

    Args:
        donor_classes: Defect class of every donor, in bank order.
        classes: Allowed classes (None: all classes present).
        class_weights: Relative weight per entry of ``classes`` (None: uniform over classes).
    """

    def __init__(self, donor_classes: Sequence[str], classes: Sequence[str] | None = None,
                 class_weights: Sequence[float] | None = None) -> None:
        present = sorted(set(donor_classes))
        self.classes = list(classes) if classes is not None else present
        if class_weights is None:
            weights = [1.0] * len(self.classes)
        else:
            weights = [float(w) for w in class_weights]
            if len(weights) != len(self.classes):
                raise ValueError(f"class_weights has {len(weights)} entries for {len(self.classes)} classes "
                                 f"{self.classes}")
            if any(w < 0 for w in weights) or sum(weights) <= 0:
                raise ValueError(f"class_weights must be >= 0 with a positive sum, got {weights}")
        self.members = {c: [i for i, d in enumerate(donor_classes) if d == c] for c in self.classes}
        usable = [(c, w) for c, w in zip(self.classes, weights, strict=True) if self.members[c] and w > 0]
        self.usable_classes = [c for c, _ in usable]
        self.weights = torch.tensor([w for _, w in usable], dtype=torch.float64)

    def sample(self, rng: torch.Generator | None) -> int:
        """Index of one donor (``rng`` None: torch's global random state)."""
        k = int(torch.multinomial(self.weights, 1, generator=rng).item())
        members = self.members[self.usable_classes[k]]
        return members[int(torch.randint(len(members), (1,), generator=rng).item())]
