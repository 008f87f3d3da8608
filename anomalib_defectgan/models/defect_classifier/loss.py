"""Loss of the DefectClassifier: BCE or focal loss on the score, BCE + Dice on the anomaly map."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import sigmoid_focal_loss

SCORE_LOSSES = ("bce", "focal")


def soft_dice_loss(logits: Tensor, target: Tensor, eps: float = 1.0) -> Tensor:
    """Mean over images of ``1 - Dice`` between ``sigmoid(logits)`` and a binary target.

    Both ``[N, 1, H, W]``. The smoothing ``eps`` makes an empty prediction of an empty
    (good) mask score ~0 loss instead of 0/0.
    """
    prob = torch.sigmoid(logits).flatten(1)
    target = target.flatten(1)
    intersection = (prob * target).sum(1)
    return (1 - (2 * intersection + eps) / (prob.sum(1) + target.sum(1) + eps)).mean()


class DefectClassifierLoss(nn.Module):
    """Image-level score loss plus pixel-level map loss on the images whose masks are known.

    Args:
        score_loss: ``"bce"`` or ``"focal"`` (torchvision's sigmoid focal loss).
        map_weight: Weight of the map term (BCE + Dice); 0 trains the score head only.
        focal_alpha: ``alpha`` of the focal loss (-1 disables class weighting).
        focal_gamma: ``gamma`` of the focal loss.
    """

    def __init__(
        self,
        score_loss: str = "bce",
        map_weight: float = 1.0,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
    ) -> None:
        super().__init__()
        if score_loss not in SCORE_LOSSES:
            raise ValueError(f"score_loss must be one of {SCORE_LOSSES}, got {score_loss!r}")
        self.score_loss = score_loss
        self.map_weight = map_weight
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma

    def forward(self, score_logits: Tensor, map_logits: Tensor, labels: Tensor, masks: Tensor,
                mask_known: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Return the total loss and its parts.

        Args:
            score_logits: ``[B]``.
            map_logits: ``[B, 1, H, W]``.
            labels: ``[B]`` float in {0, 1}.
            masks: ``[B, 1, H, W]`` float in {0, 1}.
            mask_known: ``[B]`` bool: the mask of this image is ground truth (good images, and
                defects that come with a non-empty mask). The map loss uses only these images.
        """
        if self.score_loss == "focal":
            score = sigmoid_focal_loss(score_logits, labels, alpha=self.focal_alpha, gamma=self.focal_gamma,
                                       reduction="mean")
        else:
            score = F.binary_cross_entropy_with_logits(score_logits, labels)
        parts = {"score": score}
        total = score
        if self.map_weight > 0 and bool(mask_known.any()):
            known_logits, known_masks = map_logits[mask_known], masks[mask_known]
            parts["map_bce"] = F.binary_cross_entropy_with_logits(known_logits, known_masks)
            parts["map_dice"] = soft_dice_loss(known_logits, known_masks)
            total = total + self.map_weight * (parts["map_bce"] + parts["map_dice"])
        return total, parts
