"""Loss terms of the defect-transfer GAN and their default weights (docs/design.md, "Losses and their default weights")."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from anomalib_defectgan.data.batch import MASK_KIND_IDS
from anomalib_defectgan.errors import DefectGanError

#: Generator-side weights: the start values of the original target design, plus the composite
#: path's ``self_reg`` and ``plate`` (docs/design.md, "Losses and their default weights"). Override
#: any of them with the ``loss_weights`` init argument of
#: :class:`~anomalib_defectgan.models.defect_gan.DefectGan`.
DEFAULT_WEIGHTS: dict[str, float] = {
    "adv_transfer": 1.0,      # D on the transfer X
    "adv_restore": 1.0,       # D on the restored donor A_hat (as good)
    "adv_reinsert": 0.5,      # D on the re-inserted donor A_rec
    "rec": 5.0,               # L1(A_rec, A)
    "rec_masked": 5.0,        # L1(A_rec, A) weighted by the defect mask
    "self_reg": 1.0,          # composite path: L1(X, pasted composite) in the pasted region
    "plate": 0.0,             # composite path: L1 of the 9x9-mean of X - composite in the region (no plates)
    "cycle": 5.0,             # L1(B_tilde, B): restoring the transfer gives the canvas back
    "identity": 5.0,          # L1(N_tilde, N): restoring a good image changes nothing
    "identity_mask": 1.0,     # mean mask on good images
    "mask_cycle": 5.0,        # |m_R(X) - m_T|
    "mask_area": 1.0,         # mask area prior
    "mask_binary": 0.1,       # push masks towards 0/1
    "latent": 1.0,            # z_d(X)~z_d(A), s_d(X)~s_d(A), z_t(X)~z_t(B), each with this weight
    "d_heads": 1.0,           # D's FG/BG heads on X and A_hat
    "v_critic": 0.5,          # frozen V's FG/BG heads on X and A_hat
    "cooccurrence": 1.0,      # defect co-occurrence patch D on X
    "leak": 0.05,             # leak adversaries (through gradient reversal)
    "mask_supervision": 1.0,  # BCE + Dice (pixel masks) / outside-box penalty (box masks)
    "encoder_class": 1.0,     # encoder's class head (lets encode() guess the class)
}


def resolve_weights(overrides: dict[str, float] | None) -> dict[str, float]:
    """Defaults updated with ``overrides``; an unknown name is a configuration error."""
    weights = dict(DEFAULT_WEIGHTS)
    for name, value in (overrides or {}).items():
        if name not in weights:
            raise DefectGanError(f"unknown loss weight {name!r}; known: {sorted(weights)}")
        weights[name] = float(value)
    return weights


def generator_adversarial(logits: Tensor) -> Tensor:
    """Non-saturating generator loss ``softplus(-D(fake))``."""
    return F.softplus(-logits).mean()


def discriminator_adversarial(real: Tensor, fake: Tensor) -> Tensor:
    """Logistic discriminator loss ``softplus(-D(real)) + softplus(D(fake))``."""
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def r1_penalty(real_logits: Tensor, real_inputs: Tensor) -> Tensor:
    """R1: squared gradient norm of ``D(real)`` with respect to the real inputs (mean over batch)."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real_inputs, create_graph=True)
    return grad.pow(2).flatten(1).sum(dim=1).mean()


def masked_l1(prediction: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """Mean absolute error inside ``weight`` ``[B, 1, H, W]``, normalised by the weight's mass."""
    error = (prediction - target).abs().mean(dim=1, keepdim=True)
    return (error * weight).sum() / weight.sum().clamp_min(1.0)


def plate_penalty(image: Tensor, composite: Tensor, region: Tensor, size: int = 9) -> Tensor:
    """Mean absolute low-frequency change (``size`` x ``size`` box mean of ``image - composite``) in ``region``.

    A plate (a darker or brighter disc G lays over the pasted region) is a low-frequency change;
    sharpening or softening the defect's own edges is not, so this penalises the one and spares
    the other.
    """
    low = F.avg_pool2d(image - composite, size, stride=1, padding=size // 2, count_include_pad=False)
    return masked_l1(low, torch.zeros_like(low), region)


def dice_loss(mask: Tensor, target: Tensor) -> Tensor:
    """Per-image soft Dice loss ``[B]``."""
    inter = (mask * target).flatten(1).sum(dim=1)
    total = mask.flatten(1).sum(dim=1) + target.flatten(1).sum(dim=1)
    return 1.0 - (2.0 * inter + 1.0) / (total + 1.0)


def mask_supervision(logits: Tensor, target: Tensor, mask_kind: Tensor) -> Tensor:
    """BCE + Dice where a pixel mask exists; mask outside the box where only a box exists.

    Args:
        logits: Predicted mask logits ``[B, 1, h, w]`` (any size; the target is resized to it).
        target: Ground-truth mask ``[B, 1, H, W]`` in {0, 1}.
        mask_kind: ``[B]`` ids of :data:`~anomalib_defectgan.data.batch.MASK_KIND_IDS`.

    Returns:
        Scalar loss averaged over the rows that have a pixel mask or a box (0 when none has).
    """
    if target.shape[-2:] != logits.shape[-2:]:
        target = F.adaptive_max_pool2d(target, logits.shape[-2:]) if target.shape[-1] > logits.shape[-1] \
            else F.interpolate(target, size=logits.shape[-2:], mode="nearest")
    mask = torch.sigmoid(logits)
    pixel = (mask_kind == MASK_KIND_IDS["pixel"]).to(logits.dtype)
    box = (mask_kind == MASK_KIND_IDS["box"]).to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).mean(dim=1)
    pixel_loss = bce + dice_loss(mask, target)
    outside_box = (mask * (1.0 - target)).flatten(1).mean(dim=1)
    per_row = pixel * pixel_loss + box * outside_box
    return per_row.sum() / (pixel + box).sum().clamp_min(1.0)


def area_prior(mask: Tensor, target: Tensor, mask_kind: Tensor, min_area: float, max_area: float) -> Tensor:
    """Keep a defect mask's area plausible, per row ``[B]``.

    Pixel rows: area close to the ground truth's. Box rows: no more than the box. Rows without a
    mask: inside ``[min_area, max_area]`` (fractions of the image).
    """
    area = mask.flatten(1).mean(dim=1)
    target_area = target.flatten(1).mean(dim=1)
    pixel = mask_kind == MASK_KIND_IDS["pixel"]
    box = mask_kind == MASK_KIND_IDS["box"]
    free = F.relu(area - max_area) + F.relu(min_area - area)
    return torch.where(pixel, (area - target_area).abs(), torch.where(box, F.relu(area - target_area), free))


def binary_prior(mask: Tensor) -> Tensor:
    """``m * (1 - m)``, zero for a hard 0/1 mask; mean over the batch."""
    return (mask * (1.0 - mask)).mean()
