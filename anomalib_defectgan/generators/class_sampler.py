"""Which donor a generator paints next: a class by weight, then a donor of that class."""

from __future__ import annotations

from collections.abc import Sequence

import torch


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
