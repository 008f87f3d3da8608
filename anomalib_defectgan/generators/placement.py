"""Where and how a donor defect lands on a target image: random shift and flips.

Rolled steel is directional (rolling marks, scratches along the strip), so a donor is only
flipped, which keeps the rolling axis; 90-degree rotations happen only when asked for.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Placement:
    """A donor's position and orientation on the target.

    Attributes:
        top: Row of the (transformed) donor's top-left corner in the target; negative or past
            the edge when the donor is larger than the target (the overlap is used).
        left: Column of the same corner.
        flip_h: Mirror left-right.
        flip_v: Mirror top-bottom.
        rot90: Number of counter-clockwise quarter turns (0 unless rotations were asked for).
    """

    top: int
    left: int
    flip_h: bool = False
    flip_v: bool = False
    rot90: int = 0

    def orient(self, tensor: Tensor) -> Tensor:
        """Apply the flips and rotation to a ``[..., h, w]`` tensor."""
        if self.flip_h:
            tensor = tensor.flip(-1)
        if self.flip_v:
            tensor = tensor.flip(-2)
        if self.rot90:
            tensor = torch.rot90(tensor, self.rot90, dims=(-2, -1))
        return tensor

    def as_dict(self) -> dict[str, int | bool]:
        """Plain data for manifests (``top, left, flip_h, flip_v, rot90``)."""
        return asdict(self)


def uniform_int(low: int, high: int, rng: torch.Generator | None) -> int:
    """Uniform integer between ``low`` and ``high`` inclusive, in either order."""
    low, high = min(low, high), max(low, high)
    return low + int(torch.randint(high - low + 1, (1,), generator=rng).item())


def sample_placement(donor_size: tuple[int, int], image_size: tuple[int, int], rng: torch.Generator | None,
                     flip: bool = True, rotate90: bool = False) -> Placement:
    """Draw a uniform position of a donor inside the image plus random flips.

    Args:
        donor_size: ``(h, w)`` of the donor crop before rotation.
        image_size: ``(H, W)`` of the target.
        rng: Random generator (None: torch's global random state).
        flip: Allow left-right and top-bottom mirroring.
        rotate90: Allow quarter turns.
    """
    flip_h = flip and bool(torch.randint(2, (1,), generator=rng).item())
    flip_v = flip and bool(torch.randint(2, (1,), generator=rng).item())
    rot = uniform_int(0, 3, rng) if rotate90 else 0
    h, w = donor_size if rot % 2 == 0 else donor_size[::-1]
    height, width = image_size
    top = uniform_int(0, height - h, rng)
    left = uniform_int(0, width - w, rng)
    return Placement(top, left, flip_h, flip_v, rot)


def overlap(placement: Placement, donor_size: tuple[int, int], image_size: tuple[int, int]
            ) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Slices ``(target rows, cols), (donor rows, cols)`` of the region where donor and image overlap.

    ``donor_size`` is the size after :meth:`Placement.orient`.
    """
    h, w = donor_size
    height, width = image_size
    y0, x0 = max(placement.top, 0), max(placement.left, 0)
    y1, x1 = max(min(placement.top + h, height), y0), max(min(placement.left + w, width), x0)  # empty if apart
    target = (slice(y0, y1), slice(x0, x1))
    donor = (slice(y0 - placement.top, y1 - placement.top), slice(x0 - placement.left, x1 - placement.left))
    return target, donor
