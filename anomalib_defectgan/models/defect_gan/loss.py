"""Losses of the defect-transfer GAN: the terms, their default weights, and their assembly.

:class:`DefectGanLoss` assembles the discriminator and generator losses of one iteration from its
passes (:class:`~anomalib_defectgan.models.defect_gan.passes.GanPasses`), as anomalib's
``DraemLoss`` does for DRAEM; the terms and weights are documented in docs/design.md ("Losses and
their default weights").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from anomalib_defectgan.data.batch import MASK_KIND_IDS
from anomalib_defectgan.errors import DefectGanError
from anomalib_defectgan.models.defect_gan.discriminator import sample_patches

if TYPE_CHECKING:
    from anomalib_defectgan.models.defect_gan.critic import VersatileClassifier
    from anomalib_defectgan.models.defect_gan.discriminator import (
        CooccurrenceDiscriminator,
        LeakAdversary,
        MultiTaskDiscriminator,
    )
    from anomalib_defectgan.models.defect_gan.passes import GanPasses

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
    "strength": 0.0,          # composite path: how much X's change to B is stronger than the composite's
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


def strength_excess(image: Tensor, composite: Tensor, canvas: Tensor) -> Tensor:
    """Mean over items of ``relu(|image - canvas| / |composite - canvas| - 1)`` (L2 over each item).

    The training-time form of ``DefectTransferGenerator(max_gain=1)``: zero while G's transfer
    changes the canvas no more than the composite it refines, growing with the factor by which
    it is stronger (an amplified scratch), whatever the defect's size or contrast.
    """
    made = (image - canvas).flatten(1).norm(dim=1)
    given = (composite - canvas).flatten(1).norm(dim=1)
    return F.relu(made / given.clamp_min(1e-6) - 1.0).mean()


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


def augment(images: Tensor, max_translation: float) -> Tensor:
    """Light augmentation of discriminator inputs: random flips and integer translations.

    Real and fake images get the same random distribution; it is differentiable (indexing on a
    reflection-padded copy), so the generator is trained through it.
    """
    b, _, h, w = images.shape
    device = images.device
    shift = max(0, round(max_translation * min(h, w)))
    padded = F.pad(images, (shift, shift, shift, shift), mode="reflect") if shift else images
    rows = torch.arange(h, device=device)[None, :] + torch.randint(0, 2 * shift + 1, (b, 1), device=device)
    cols = torch.arange(w, device=device)[None, :] + torch.randint(0, 2 * shift + 1, (b, 1), device=device)
    flip_rows = torch.rand(b, 1, device=device) < 0.5
    flip_cols = torch.rand(b, 1, device=device) < 0.5
    rows = torch.where(flip_rows, rows.flip(1), rows)
    cols = torch.where(flip_cols, cols.flip(1), cols)
    batch = torch.arange(b, device=device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # [B, H, W, C]
    return out.permute(0, 3, 1, 2)


@dataclass
class Critics:
    """The networks that judge the generator (they belong to the Lightning module, not to the loss).

    Attributes:
        discriminator: The multi-task D (real/fake, class, grade).
        cooccurrence: The defect co-occurrence patch D.
        leak_class: Adversary guessing the class from the texture code.
        leak_grade: Adversary guessing the grade from the defect code.
        critic: The frozen versatile classifier V (None: not trained, or its weight is 0).
        patch: Side of the co-occurrence patches.
    """

    discriminator: MultiTaskDiscriminator
    cooccurrence: CooccurrenceDiscriminator
    leak_class: LeakAdversary
    leak_grade: LeakAdversary
    critic: VersatileClassifier | None
    patch: int


class DefectGanLoss(nn.Module):
    """The discriminator and generator losses of one DefectGan iteration.

    Args:
        weights: Generator-side weights (:func:`resolve_weights`).
        augment_translation: Max translation (fraction of size) of the discriminator augmentation.
        patches_per_image: Co-occurrence query and reference patches per image.
        r1_gamma: R1 weight of the main discriminator.
        cooccurrence_r1_gamma: R1 weight of the co-occurrence discriminator.
        r1_every: Lazy R1 interval (the penalty is scaled by it).
        min_mask_area: Area prior lower bound for rows without a ground-truth mask.
        max_mask_area: Area prior upper bound for rows without a ground-truth mask.
    """

    def __init__(self, weights: dict[str, float], augment_translation: float, patches_per_image: int,
                 r1_gamma: float, cooccurrence_r1_gamma: float, r1_every: int, min_mask_area: float,
                 max_mask_area: float) -> None:
        super().__init__()
        self.weights = weights
        self.translation = augment_translation
        self.patches = patches_per_image
        self.r1_gamma, self.cooccurrence_r1_gamma, self.r1_every = r1_gamma, cooccurrence_r1_gamma, r1_every
        self.min_mask_area, self.max_mask_area = min_mask_area, max_mask_area

    @staticmethod
    def _real_and_fake(f: GanPasses) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        zeros_n, zeros_g = torch.zeros_like(f.k), torch.zeros_like(f.q_n)
        real = torch.cat([f.a, f.b, f.goods])
        real_k = torch.cat([f.k, zeros_n, zeros_g])
        real_q = torch.cat([f.p, f.q, f.q_n])
        fake = torch.cat([f.transfer, f.restored, f.reinserted])
        fake_k = torch.cat([f.k, zeros_n, f.k])
        fake_q = torch.cat([f.q, f.p, f.p])
        return real, real_k, real_q, fake, fake_k, fake_q

    def discriminator_losses(self, f: GanPasses, critics: Critics, r1: bool) -> dict[str, Tensor]:
        """Losses of the multi-task and co-occurrence discriminators (fakes detached)."""
        t = self.translation
        real, real_k, real_q, fake, fake_k, fake_q = self._real_and_fake(f)
        d_real = critics.discriminator(augment(real, t), real_k, real_q)
        d_fake = critics.discriminator(augment(fake.detach(), t), fake_k, fake_q)
        losses = {
            "d_adv": discriminator_adversarial(d_real.adversarial, d_fake.adversarial),
            "d_class": F.cross_entropy(d_real.class_logits, real_k),
            "d_grade": F.cross_entropy(d_real.grade_logits, real_q),
        }
        reference = sample_patches(f.a, f.region, self.patches, critics.patch)
        real_query = sample_patches(f.a, f.region, self.patches, critics.patch)
        fake_query = sample_patches(f.transfer.detach(), f.m_t.detach(), self.patches, critics.patch)
        losses["d_cooc"] = discriminator_adversarial(critics.cooccurrence(real_query, reference),
                                                     critics.cooccurrence(fake_query, reference))
        if r1:
            with torch.autocast(device_type=real.device.type, enabled=False):
                real_in = augment(real.float(), t).detach().requires_grad_(True)
                penalty = r1_penalty(critics.discriminator(real_in, real_k, real_q).adversarial, real_in)
                query_in = real_query.float().detach().requires_grad_(True)
                cooc_penalty = r1_penalty(critics.cooccurrence(query_in, reference.float()), query_in)
            losses["d_r1"] = penalty * (self.r1_gamma / 2.0 * self.r1_every)
            losses["d_cooc_r1"] = cooc_penalty * (self.cooccurrence_r1_gamma / 2.0 * self.r1_every)
        return losses

    def generator_losses(self, f: GanPasses, critics: Critics, ramp: Tensor | float = 1.0) -> dict[str, Tensor]:
        """Unweighted generator-side loss terms (see :data:`DEFAULT_WEIGHTS`)."""
        n, k, p, q = f.n, f.k, f.p, f.q
        zeros = torch.zeros_like(k)
        _, _, _, fake, fake_k, fake_q = self._real_and_fake(f)
        d_fake = critics.discriminator(augment(fake, self.translation), fake_k, fake_q)
        adv_x, adv_r, adv_rec = torch.split(d_fake.adversarial, [n, n, n])
        cls_x, cls_r, _ = torch.split(d_fake.class_logits, [n, n, n])
        grd_x, grd_r, _ = torch.split(d_fake.grade_logits, [n, n, n])
        enc_a, enc_b, enc_x = f.enc_a, f.enc_b, f.enc_x
        # The terms are built in this order on purpose: autograd's order follows it, and another
        # order sums shared gradients differently (the same seed then trains to other last bits).
        losses = {
            "adv_transfer": generator_adversarial(adv_x),
            "adv_restore": generator_adversarial(adv_r),
            "adv_reinsert": generator_adversarial(adv_rec),
            "rec": F.l1_loss(f.reinserted, f.a),
            "rec_masked": masked_l1(f.reinserted, f.a, f.region) * ramp,
            "cycle": F.l1_loss(f.cycled, f.b),
            "identity": F.l1_loss(f.identity, f.goods),
            "identity_mask": f.m_n.mean(),
            "mask_cycle": (f.m_cycle - f.m_t).abs().mean() * ramp,
            "mask_area": (area_prior(f.m_t, f.gt, f.kind, self.min_mask_area, self.max_mask_area)
                          + area_prior(f.m_r, f.gt, f.kind, self.min_mask_area, self.max_mask_area)).mean() * ramp,
            "mask_binary": binary_prior(f.m_t) + binary_prior(f.m_r),
            "latent": (enc_x.z_d - enc_a.z_d.detach()).abs().mean()
            + (enc_x.style(k) - f.s_a.detach()).abs().mean()
            + (1.0 - (enc_x.z_t * enc_b.z_t.detach()).sum(dim=1)).mean(),
            "d_heads": F.cross_entropy(cls_x, k) + F.cross_entropy(grd_x, q) + F.cross_entropy(cls_r, zeros)
            + F.cross_entropy(grd_r, p),
        }
        if critics.critic is not None and self.weights["v_critic"] > 0:
            v = critics.critic(torch.cat([f.transfer, f.restored]))
            losses["v_critic"] = F.cross_entropy(v.class_logits, torch.cat([k, zeros])) + F.cross_entropy(
                v.grade_logits, torch.cat([q, p]))
        reference = sample_patches(f.a, f.region, self.patches, critics.patch)
        query = sample_patches(f.transfer, f.m_t, self.patches, critics.patch)
        losses["cooccurrence"] = generator_adversarial(critics.cooccurrence(query, reference)) * ramp
        all_classes = torch.cat([k, zeros, torch.zeros_like(f.q_n)])
        losses["leak"] = F.cross_entropy(critics.leak_class(f.enc.z_t), all_classes) + F.cross_entropy(
            critics.leak_grade(enc_a.z_d.mean(dim=(2, 3))), p)
        losses["mask_supervision"] = (
            mask_supervision(f.restore_logits, f.gt, f.kind)
            + mask_supervision(f.transfer_logits, f.gt, f.kind)
            + mask_supervision(enc_a.coarse_mask_logits, f.gt, f.kind))
        if f.pasted is not None:
            losses["self_reg"] = masked_l1(f.transfer, f.pasted, f.m_t)
            if self.weights["plate"] > 0:  # off by default: not computed on every step for nothing
                losses["plate"] = plate_penalty(f.transfer, f.pasted, f.m_t)
            # logged at any weight; it trains G (and costs a backward pass) only when weighted
            transfer = f.transfer if self.weights["strength"] > 0 else f.transfer.detach()
            losses["strength"] = strength_excess(transfer, f.pasted, f.b)
        losses["encoder_class"] = F.cross_entropy(f.enc.class_logits, all_classes)
        return losses

    def generator_total(self, losses: dict[str, Tensor]) -> Tensor:
        """The weighted sum of :meth:`generator_losses`."""
        return sum(self.weights[name] * value for name, value in losses.items())
