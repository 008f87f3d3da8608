"""The forward passes of one DefectGan training iteration, and the sampling pass of its grids.

Donors A (class k, grade p), canvases B (good, grade q), goods N (grade q_n). The code path
(``defect_path="code"``): restore ``A_hat``, transfer ``X = G(B, code(A), s_d(A), k, q)``,
re-insert ``A_rec = G(stopgrad(A_hat) + noise, code(A), ...)``, cycle ``B_tilde = G(X, code(X),
0, good, q)`` and identity ``N_tilde``. The composite path pastes A's real defect onto B (and onto
``stopgrad(A_hat)``, the paired target that must rebuild A) and G refines that composite.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from anomalib_defectgan.data.batch import MASK_KIND_IDS, GanBatch
from anomalib_defectgan.models.defect_gan.torch_model import DefectGanNet, EncoderOutput

_ENCODER_FIELDS = ("features", "z_d", "coarse_mask_logits", "style_all", "z_t", "class_logits", "pooled_defect")


@dataclass
class GanPasses:
    """What one iteration's passes produced; the losses read it.

    Attributes:
        n: Donor/canvas pairs.
        a: Donor images A. k, p: their class and grade.
        b: Canvas images B. q: their grade.
        goods: Good images N. q_n: their grade.
        enc: Encoding of ``[A, B, N]``; enc_a, enc_b, enc_n: its parts; enc_x: encoding of X.
        s_a: A's defect style.
        restore_logits: Mask logits of the restoration; transfer_logits: of the transfer.
        restored: ``A_hat``. transfer: X. identity: ``N_tilde``. reinserted: ``A_rec``. cycled: ``B_tilde``.
        m_r, m_t, m_n, m_cycle: Masks of restoration, transfer (the pasted region on the composite
            path), identity and cycle.
        region: Where A's defect is (its label, or the restoration's mask without one).
        gt: A's label mask. kind: its mask kind (:data:`~anomalib_defectgan.data.batch.MASK_KIND_IDS`).
        pasted: The composite G refined (composite path only).
    """

    n: int
    a: Tensor
    b: Tensor
    goods: Tensor
    k: Tensor
    p: Tensor
    q: Tensor
    q_n: Tensor
    enc: EncoderOutput
    enc_a: EncoderOutput
    enc_b: EncoderOutput
    enc_n: EncoderOutput
    enc_x: EncoderOutput
    s_a: Tensor
    restore_logits: Tensor
    transfer_logits: Tensor
    restored: Tensor
    transfer: Tensor
    identity: Tensor
    m_r: Tensor
    m_t: Tensor
    m_n: Tensor
    reinserted: Tensor
    cycled: Tensor
    m_cycle: Tensor
    region: Tensor
    gt: Tensor
    kind: Tensor
    pasted: Tensor | None = None


def split_encoding(enc: EncoderOutput, sizes: list[int]) -> list[EncoderOutput]:
    """Split a batched encoder output into parts of the given sizes."""
    parts: list[list[Any]] = [[] for _ in sizes]
    for value in (getattr(enc, name) for name in _ENCODER_FIELDS):
        if isinstance(value, list):
            pieces = list(zip(*(torch.split(v, sizes) for v in value), strict=True))
            for i, piece in enumerate(pieces):
                parts[i].append(list(piece))
        else:
            for i, piece in enumerate(torch.split(value, sizes)):
                parts[i].append(piece)
    return [EncoderOutput(*p) for p in parts]


def cat_encodings(parts: list[EncoderOutput]) -> EncoderOutput:
    """Concatenate encoder outputs along the batch (the inverse of :func:`split_encoding`)."""
    values = []
    for name in _ENCODER_FIELDS:
        pieces = [getattr(part, name) for part in parts]
        values.append([torch.cat(level) for level in zip(*pieces, strict=True)] if isinstance(pieces[0], list)
                      else torch.cat(pieces))
    return EncoderOutput(*values)


def drop_grade(net: DefectGanNet, grade: Tensor, probability: float) -> Tensor:
    """Replace each grade by 'unknown grade' with ``probability`` (so unseen grades can be painted)."""
    unknown = torch.full_like(grade, net.unknown_grade)
    return torch.where(torch.rand(grade.shape, device=grade.device) < probability, unknown, grade)


#: What the paired target pastes the donor's defect back onto (``DefectGan(paired_background=...)``).
PAIRED_BACKGROUNDS = ("restored", "filled")


def paired_canvas(donor: Tensor, defect: Tensor) -> Tensor:
    """The donor without its defect: its own pixels outside ``defect``, the material around them filled in under it.

    Unlike G's restoration ``A_hat``, it carries no trace of the defect and none of G's
    reconstruction error, so the pixels around a pasted defect are the donor's real ones, as a
    real canvas' are at transfer time; G is not taught to correct a restoration it never sees
    when painting.
    """
    from anomalib_defectgan.data.blending import fill_from_surroundings

    return fill_from_surroundings(donor, 1.0 - defect)


def forward_passes(net: DefectGanNet, batch: GanBatch, grade_dropout: float, reinsert_noise: float,
                   contrast_jitter: float, paired_background: str, cycle_through_transfer: bool) -> GanPasses:
    """Restore, transfer, identity, re-insert and cycle passes of one iteration (either path)."""
    if net.composite_path:
        return composite_passes(net, batch, grade_dropout, contrast_jitter, paired_background, cycle_through_transfer)
    return code_passes(net, batch, grade_dropout, reinsert_noise)


def code_passes(net: DefectGanNet, batch: GanBatch, grade_dropout: float, reinsert_noise: float) -> GanPasses:
    """The passes of ``defect_path="code"``: the defect reaches G through its codes only."""
    donor, canvas, good = batch.donor, batch.canvas, batch.good
    n = min(len(donor), len(canvas))
    a, k, p = donor.image[:n], donor.defect_class[:n], donor.grade[:n]
    b, q = canvas.image[:n], canvas.grade[:n]
    goods, q_n = good.image, good.grade
    zeros = torch.zeros_like(k)
    images = torch.cat([a, b, goods])
    enc = net.encode(images)
    enc_a, enc_b, enc_n = split_encoding(enc, [n, n, len(goods)])
    s_a = enc_a.style(k)
    first = net.decode(
        images, enc,
        torch.cat([enc_a.z_d, enc_a.z_d, enc_n.z_d]),
        torch.cat([enc_a.coarse_mask_logits, enc_a.coarse_mask_logits, enc_n.coarse_mask_logits]),
        torch.cat([torch.zeros_like(s_a), s_a, enc_n.style(torch.zeros_like(q_n))]),
        torch.cat([zeros, k, torch.zeros_like(q_n)]), drop_grade(net, torch.cat([p, q, q_n]), grade_dropout))
    restored, transfer, identity = torch.split(first.image, [n, n, len(goods)])
    m_r, m_t, m_n = torch.split(first.mask, [n, n, len(goods)])
    noisy = (restored.detach() + reinsert_noise * torch.randn_like(restored)).clamp(0.0, 1.0)
    second_in = torch.cat([noisy, transfer])
    enc2 = net.encode(second_in)
    _, enc_x = split_encoding(enc2, [n, n])
    second = net.decode(second_in, enc2, torch.cat([enc_a.z_d, enc_x.z_d]),
                        torch.cat([enc_a.coarse_mask_logits, enc_x.coarse_mask_logits]),
                        torch.cat([s_a, torch.zeros_like(s_a)]), torch.cat([k, zeros]),
                        drop_grade(net, torch.cat([p, q]), grade_dropout))
    reinserted, cycled = torch.split(second.image, [n, n])
    region = torch.where((donor.mask_kind[:n] != MASK_KIND_IDS["none"])[:, None, None, None],
                         donor.mask[:n], m_r.detach())
    return GanPasses(
        n=n, a=a, b=b, goods=goods, k=k, p=p, q=q, q_n=q_n, enc=enc, enc_a=enc_a, enc_b=enc_b, enc_n=enc_n,
        enc_x=enc_x, s_a=s_a, restore_logits=first.mask_logits[:n], transfer_logits=first.mask_logits[n:2 * n],
        restored=restored, transfer=transfer, identity=identity, m_r=m_r, m_t=m_t, m_n=m_n, reinserted=reinserted,
        cycled=cycled, m_cycle=second.mask[n:], region=region, gt=donor.mask[:n], kind=donor.mask_kind[:n])


def composite_passes(net: DefectGanNet, batch: GanBatch, grade_dropout: float, contrast_jitter: float,
                     paired_background: str, cycle_through_transfer: bool) -> GanPasses:
    """The passes of ``defect_path="composite"``: the donor's real pixels are pasted, G refines.

    1. Restore ``A_hat`` and identity ``N_tilde`` as in the code path (G's own mask).
    2. Transfer ``X = G(paste(A -> B))`` in the pasted region; paired target
       ``A_rec = G(paste(jitter(A) -> background))`` must rebuild ``A``, where ``background`` is
       ``stopgrad(A_hat)`` (``paired_background="restored"``) or the donor itself with its defect
       pixels filled in from the material around them (``"filled"``, :func:`paired_canvas`).
    3. Cycle ``B_tilde = G(X, code(X), 0, good, q)``. With ``cycle_through_transfer`` False the
       cycle starts from ``stopgrad(X)``: the cycle, mask-cycle and latent terms still train the
       encoder and the restoration, but no longer reward G for a transfer that is easy to find and
       remove, i.e. for a stronger defect than the composite's.
    """
    donor, canvas, good = batch.donor, batch.canvas, batch.good
    n = min(len(donor), len(canvas))
    a, k, p = donor.image[:n], donor.defect_class[:n], donor.grade[:n]
    b, q = canvas.image[:n], canvas.grade[:n]
    goods, q_n = good.image, good.grade
    zeros, zeros_n = torch.zeros_like(k), torch.zeros_like(q_n)
    enc = net.encode(torch.cat([a, b, goods]))
    enc_a, enc_b, enc_n = split_encoding(enc, [n, n, len(goods)])
    s_a = enc_a.style(k)
    restore_in = torch.cat([a, goods])
    enc_r = cat_encodings([enc_a, enc_n])
    first = net.decode(restore_in, enc_r, enc_r.z_d, enc_r.coarse_mask_logits,
                       torch.cat([torch.zeros_like(s_a), enc_n.style(zeros_n)]), torch.cat([zeros, zeros_n]),
                       drop_grade(net, torch.cat([p, q_n]), grade_dropout))
    restored, identity = torch.split(first.image, [n, len(goods)])
    m_r, m_n = torch.split(first.mask, [n, len(goods)])
    has_gt = (donor.mask_kind[:n] != MASK_KIND_IDS["none"])[:, None, None, None]
    defect = torch.where(has_gt, donor.mask[:n], (m_r.detach() > 0.5).to(a.dtype))
    gain = 1.0 + contrast_jitter * (2.0 * torch.rand(n, 1, 1, 1, device=a.device) - 1.0)
    background = (a * (1.0 - defect)).sum(dim=(2, 3), keepdim=True) / (1.0 - defect).sum(
        dim=(2, 3), keepdim=True).clamp_min(1.0)
    jittered = (background + gain * (a - background)).clamp(0.0, 1.0)
    paired_base = restored.detach() if paired_background == "restored" else paired_canvas(a, defect)
    paired_in, paired_region = net.composite(paired_base, jittered, defect)
    pasted, region = net.composite(b, a, defect)
    second_in = torch.cat([paired_in, pasted])
    enc2 = net.encode(second_in)
    second = net.decode(second_in, enc2, torch.cat([enc_a.z_d, enc_a.z_d]),
                        torch.cat([enc_a.coarse_mask_logits, enc_a.coarse_mask_logits]),
                        torch.cat([s_a, s_a]), torch.cat([k, k]), drop_grade(net, torch.cat([p, q]), grade_dropout),
                        torch.cat([paired_region, region]))
    reinserted, transfer = torch.split(second.image, [n, n])
    cycle_in = transfer if cycle_through_transfer else transfer.detach()
    enc_x = net.encode(cycle_in)
    cycle = net.decode(cycle_in, enc_x, enc_x.z_d, enc_x.coarse_mask_logits, torch.zeros_like(s_a), zeros,
                       drop_grade(net, q, grade_dropout))
    return GanPasses(
        n=n, a=a, b=b, goods=goods, k=k, p=p, q=q, q_n=q_n, enc=enc, enc_a=enc_a, enc_b=enc_b, enc_n=enc_n,
        enc_x=enc_x, s_a=s_a, restore_logits=first.mask_logits[:n], transfer_logits=second.mask_logits[n:],
        restored=restored, transfer=transfer, identity=identity, m_r=m_r, m_t=region, m_n=m_n,
        reinserted=reinserted, cycled=cycle.image, m_cycle=cycle.mask, region=paired_region, gt=donor.mask[:n],
        kind=donor.mask_kind[:n], pasted=pasted)


@dataclass
class SamplePasses:
    """Transfers and restorations of a fixed batch, for sample grids and validation.

    Attributes:
        donor, canvas: The inputs. pasted: The composite G refines (the canvas on the code path).
        transfer: X. mask: Its label (the changed pixels on the composite path, G's mask on the code path).
        restored, restore_mask: ``A_hat`` and its mask. identity_l1: Mean ``|N_tilde - N|``.
    """

    donor: Tensor
    canvas: Tensor
    pasted: Tensor
    transfer: Tensor
    mask: Tensor
    restored: Tensor
    restore_mask: Tensor
    identity_l1: Tensor


@torch.no_grad()
def sample_passes(net: DefectGanNet, batch: GanBatch) -> SamplePasses:
    """Transfer donors onto canvases and restore donors with ``net`` (the EMA network, as inference does)."""
    n = min(len(batch.donor), len(batch.canvas))
    donor, canvas = batch.donor.image[:n], batch.canvas.image[:n]
    k, p, q = batch.donor.defect_class[:n], batch.donor.grade[:n], batch.canvas.grade[:n]
    enc_a = net.encode(donor)
    s_a = enc_a.style(k)
    zeros = torch.zeros_like(k)
    restored = net.decode(donor, enc_a, enc_a.z_d, enc_a.coarse_mask_logits, torch.zeros_like(s_a), zeros, p)
    has_gt = (batch.donor.mask_kind[:n] != MASK_KIND_IDS["none"])[:, None, None, None]
    donor_mask = torch.where(has_gt, batch.donor.mask[:n], (restored.mask > 0.5).to(donor.dtype))
    transfer = net.transfer(canvas, enc_a.z_d, enc_a.coarse_mask_logits, s_a, k, q, donor, donor_mask)
    if net.composite_path:
        from anomalib_defectgan.data.blending import changed_mask

        pasted = net.composite(canvas, donor, donor_mask)[0]
        label = changed_mask(transfer.image, canvas).to(canvas.dtype)
    else:
        pasted, label = canvas, transfer.mask
    enc_n = net.encode(batch.good.image)
    zeros_n = torch.zeros_like(batch.good.grade)
    identity = net.decode(batch.good.image, enc_n, enc_n.z_d, enc_n.coarse_mask_logits, enc_n.style(zeros_n), zeros_n,
                          batch.good.grade)
    return SamplePasses(donor=donor, canvas=canvas, pasted=pasted, transfer=transfer.image, mask=label,
                        restored=restored.image, restore_mask=restored.mask,
                        identity_l1=(identity.image - batch.good.image).abs().mean())
