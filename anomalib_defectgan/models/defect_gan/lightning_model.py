"""DefectGan: the Lightning module that trains the layered defect-transfer GAN.

One training iteration (manual optimisation) on donors A (class k, grade p), canvases B (good,
grade q) and goods N:

1. Restore ``A_hat = G(A, code(A), s=0, good, p)`` (mask ``m_R``).
2. Transfer ``X = G(B, code(A), s_d(A), k, q)`` (mask ``m_T``).
3. Re-insert ``A_rec = G(stopgrad(A_hat) + noise, code(A), s_d(A), k, p)``.
4. Cycle ``B_tilde = G(X, code(X), 0, good, q)``; identity ``N_tilde = G(N, code(N), 0, good, q)``.
5. One discriminator step, then one generator step, then the EMA update.

``trainer.global_step`` counts iterations: the discriminator step goes straight to its torch
optimizer, so only the generator step is counted by Lightning. For that reason 16-bit mixed
precision (which needs a gradient scaler) is refused; ``32-true`` and ``bf16-mixed`` work.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from anomalib_defectgan.data.batch import MASK_KIND_IDS, DefectBatch, GanBatch
from anomalib_defectgan.errors import DefectGanError
from anomalib_defectgan.models.defect_gan import loss as L
from anomalib_defectgan.models.defect_gan.classifier import VersatileClassifier
from anomalib_defectgan.models.defect_gan.discriminator import (
    CooccurrenceDiscriminator,
    LeakAdversary,
    MultiTaskDiscriminator,
    sample_patches,
)
from anomalib_defectgan.models.defect_gan.torch_model import DefectGanNet, EncoderOutput

logger = logging.getLogger(__name__)

NET_ARGS = ("base_channels", "max_channels", "zd_channels", "sd_dim", "zt_dim", "w_dim", "embed_dim",
            "mapping_layers", "mask_bias", "canvas_skip", "code_levels", "defect_path", "composite_feather",
            "region_dilation", "region_feather", "composite_mode")


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


def _split(enc: EncoderOutput, sizes: list[int]) -> list[EncoderOutput]:
    """Split a batched encoder output into parts of the given sizes."""
    parts: list[list[Any]] = [[] for _ in sizes]
    for value in (enc.features, enc.z_d, enc.l8, enc.style_all, enc.z_t, enc.class_logits, enc.pooled_defect):
        if isinstance(value, list):
            pieces = list(zip(*(torch.split(v, sizes) for v in value), strict=True))
            for i, piece in enumerate(pieces):
                parts[i].append(list(piece))
        else:
            for i, piece in enumerate(torch.split(value, sizes)):
                parts[i].append(piece)
    return [EncoderOutput(*p) for p in parts]


def _cat(parts: list[EncoderOutput]) -> EncoderOutput:
    """Concatenate encoder outputs along the batch (the inverse of :func:`_split`)."""
    values = []
    for name in ("features", "z_d", "l8", "style_all", "z_t", "class_logits", "pooled_defect"):
        pieces = [getattr(part, name) for part in parts]
        values.append([torch.cat(level) for level in zip(*pieces, strict=True)] if isinstance(pieces[0], list)
                      else torch.cat(pieces))
    return EncoderOutput(*values)


class DefectGan(pl.LightningModule):
    """Layered defect-transfer swapping autoencoder (docs/design.md).

    All arguments are plain data, so checkpoints load with ``weights_only=True``. The
    vocabularies, image channels and crop size are taken from the datamodule at ``setup`` when
    not given, and stored in the hyper-parameters (hence in every checkpoint).

    Args:
        classes: Class vocabulary, ``'good'`` first. From the datamodule when None.
        grades: Grade vocabulary. From the datamodule when None.
        channels: Image channels. From the datamodule when None.
        crop_size: Training crop size. From the datamodule when None.
        base_channels: Encoder/generator channels at full resolution (doubled per halving).
        max_channels: Cap on encoder/generator channels.
        zd_channels: Channels of the spatial defect code ``z_d`` (at H/8).
        sd_dim: Size of the defect-style vector ``s_d``.
        zt_dim: Size of the texture code ``z_t``.
        w_dim: Size of the modulation style ``w``.
        embed_dim: Size of the class and grade embeddings.
        mapping_layers: Layers of the style mapping MLP.
        mask_bias: Initial coarse mask logit (masks start at ``sigmoid(mask_bias)``).
        canvas_skip: Foreground starts as the canvas (a logit skip) instead of being painted from
            features.
        code_levels: Resolution levels of encoder and generator; the spatial defect code lives at
            ``H / 2**(code_levels - 1)`` (4: H/8; 3: H/4 keeps finer defect geometry).
        defect_path: ``"code"`` (the defect reaches G through its codes only) or ``"composite"``
            (also as the donor's real pixels pasted onto the canvas; G learns a residual on that
            composite; see :mod:`~anomalib_defectgan.models.defect_gan.torch_model`).
        composite_feather: Gaussian sigma (px) of the pasted defect's edge (``"composite"``).
        region_dilation: Pixels the region G may change grows beyond the pasted edge (``"composite"``).
        region_feather: Gaussian sigma (px) over which G's change fades out beyond that region
            (``"composite"``; 0: a hard edge).
        composite_mode: How the donor's defect is put on the canvas (``"composite"``): ``"paste"``
            (its pixels, brightness-matched) or ``"residual"`` (the canvas plus the defect's change
            against the donor's background filled in from around it: no donor background is
            pasted; :func:`~anomalib_defectgan.data.blending.paste_change`).
        contrast_jitter: ``"composite"`` training: the donor's defect is put back on its own restored
            background with its contrast scaled by a random factor in ``1 +- contrast_jitter``, and G
            must rebuild the real donor from that (the paired target).
        d_base_channels: Discriminator width at full resolution.
        d_max_channels: Cap on discriminator width.
        patch_size: Side of co-occurrence patches (default: crop_size // 4, at least 8).
        patches_per_image: Query and reference patches per image.
        classifier_width: Width of the versatile classifier V.
        classifier_steps: Steps V trains on real crops before the GAN starts (0: no V critic).
        classifier_lr: Learning rate of V.
        lr: Adam learning rate of generator and encoder.
        d_lr: Adam learning rate of the discriminators (``lr`` when None).
        betas: Adam betas.
        loss_weights: Overrides of :data:`~anomalib_defectgan.models.defect_gan.loss.DEFAULT_WEIGHTS`.
        r1_gamma: R1 weight of the main discriminator.
        cooccurrence_r1_gamma: R1 weight of the co-occurrence discriminator.
        r1_every: Lazy R1: apply every this many iterations (0: never).
        ema_decay: EMA decay of encoder and generator.
        ema_rampup: Use ``min(ema_decay, (1 + step) / (10 + step))`` so short runs get a useful EMA.
        grade_dropout: Probability of conditioning the generator on 'unknown grade' (so a grade
            never seen in training can be used at inference).
        reinsert_noise: Std of the noise added to the restored donor before re-insertion.
        mask_warmup_steps: Iterations before mask-dependent losses start for rows without a
            ground-truth mask.
        mask_ramp_steps: Iterations over which they ramp up to full weight.
        min_mask_area: Area prior lower bound (fraction) for rows without a ground-truth mask.
        max_mask_area: Area prior upper bound (fraction) for rows without a ground-truth mask.
        augment_translation: Max translation (fraction of size) of the discriminator augmentation.
        sample_every: Write a sample grid every this many iterations (0: only at the end).
        sample_count: Rows of the sample grid.
        export_generator: Write ``generator/generator.safetensors`` + ``.json`` at the end of fit.
    """

    def __init__(
        self,
        classes: list[str] | None = None,
        grades: list[str] | None = None,
        channels: int | None = None,
        crop_size: int | None = None,
        base_channels: int = 16,
        max_channels: int = 64,
        zd_channels: int = 8,
        sd_dim: int = 16,
        zt_dim: int = 64,
        w_dim: int = 64,
        embed_dim: int = 16,
        mapping_layers: int = 2,
        mask_bias: float = -1.0,
        canvas_skip: bool = False,
        code_levels: int = 4,
        defect_path: str = "code",
        composite_feather: float = 2.0,
        region_dilation: int = 1,
        region_feather: float = 0.0,
        composite_mode: str = "paste",
        contrast_jitter: float = 0.4,
        d_base_channels: int = 16,
        d_max_channels: int = 64,
        patch_size: int | None = None,
        patches_per_image: int = 4,
        classifier_width: int = 16,
        classifier_steps: int = 200,
        classifier_lr: float = 0.001,
        lr: float = 0.002,
        d_lr: float | None = None,
        betas: list[float] | None = None,
        loss_weights: dict[str, float] | None = None,
        r1_gamma: float = 1.0,
        cooccurrence_r1_gamma: float = 1.0,
        r1_every: int = 16,
        ema_decay: float = 0.999,
        ema_rampup: bool = True,
        grade_dropout: float = 0.5,
        reinsert_noise: float = 0.02,
        mask_warmup_steps: int = 500,
        mask_ramp_steps: int = 1000,
        min_mask_area: float = 0.002,
        max_mask_area: float = 0.35,
        augment_translation: float = 0.125,
        sample_every: int = 500,
        sample_count: int = 8,
        export_generator: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.weights = L.resolve_weights(loss_weights)
        self._sample_batch: GanBatch | None = None
        self.built = False
        if classes and grades and channels and crop_size:
            self.configure_vocab(classes, grades, channels, crop_size)

    # ------------------------------------------------------------------ building
    def net_config(self) -> dict[str, Any]:
        """Init arguments of :class:`DefectGanNet` (what ``generator.json`` records)."""
        h = self.hparams
        config = {name: h[name] for name in NET_ARGS}
        config.update(channels=h.channels, num_classes=len(h.classes), num_grades=len(h.grades))
        return config

    def configure_vocab(self, classes: list[str], grades: list[str], channels: int, crop_size: int) -> None:
        """Fix the vocabularies and image geometry and build the networks (once).

        Raises:
            DefectGanError: The model was configured (or trained) for other vocabularies.
        """
        given = {"classes": list(classes), "grades": list(grades), "channels": int(channels),
                 "crop_size": int(crop_size)}
        if classes[0] != "good":
            raise DefectGanError(f"class vocabulary must start with 'good', got {list(classes)}")
        for name, value in given.items():
            current = self.hparams.get(name)
            if current not in (None, [], value):
                raise DefectGanError(
                    f"model {name} {current} do not match the data's {value}: the model config (or checkpoint) "
                    f"was made for other data; remove model.{name} from the config or use matching data")
        if self.built:
            return
        for name, value in given.items():
            self.hparams[name] = value
        self._build()

    def _build(self) -> None:
        h = self.hparams
        stride = max(8, 2 ** (h.code_levels - 1))
        if h.crop_size % stride:
            raise DefectGanError(f"crop_size must be a multiple of {stride}, got {h.crop_size}")
        num_classes, num_grades = len(h.classes), len(h.grades)
        self.net = DefectGanNet(**self.net_config())
        self.net_ema = copy.deepcopy(self.net).requires_grad_(False)
        self.discriminator = MultiTaskDiscriminator(h.channels, num_classes, num_grades, h.crop_size,
                                                    h.d_base_channels, h.d_max_channels)
        self.patch = h.patch_size or max(8, h.crop_size // 4)
        self.cooccurrence = CooccurrenceDiscriminator(h.channels, self.patch, h.d_base_channels, h.d_max_channels)
        self.leak_class = LeakAdversary(h.zt_dim, num_classes)
        self.leak_grade = LeakAdversary(h.zd_channels, num_grades)
        self.classifier = VersatileClassifier(h.channels, num_classes, num_grades, h.classifier_width)
        self.classifier.requires_grad_(False)
        self.register_buffer("classifier_trained", torch.tensor(False))
        self.built = True

    def setup(self, stage: str) -> None:
        """Take vocabularies and geometry from the datamodule; refuse fp16 mixed precision."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "classes"):
            self.configure_vocab(datamodule.classes, datamodule.grades, datamodule.channels, datamodule.crop_size)
        if not self.built:
            raise DefectGanError("DefectGan needs classes, grades, channels and crop_size: give them as init "
                                 "arguments or train with a DefectDataModule")
        precision = str(getattr(self.trainer, "precision", "32-true"))
        scaler = getattr(getattr(self.trainer, "precision_plugin", None), "scaler", None)
        if precision.startswith("16") or scaler is not None:
            raise DefectGanError(f"precision {precision!r} is not supported: use '32-true' or 'bf16-mixed'")

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse a checkpoint of another kind or of other vocabularies."""
        state = checkpoint.get("state_dict", {})
        hparams = checkpoint.get("hyper_parameters", {})
        if not any(key.startswith("net_ema.") for key in state) or "classes" not in hparams:
            raise DefectGanError("the checkpoint is not a DefectGan checkpoint (no EMA generator weights)")
        for name in ("classes", "grades", "channels", "crop_size"):
            if self.built and hparams.get(name) != self.hparams.get(name):
                raise DefectGanError(f"the checkpoint's {name} {hparams.get(name)} do not match the data's "
                                     f"{self.hparams.get(name)}")

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """Adam for encoder + generator + leak adversaries, Adam for the two discriminators.

        The discriminators' lr and betas are adjusted for lazy R1 as in StyleGAN2.
        """
        h = self.hparams
        betas = tuple(h.betas or (0.0, 0.99))
        g_params = [*self.net.parameters(), *self.leak_class.parameters(), *self.leak_grade.parameters()]
        d_params = [*self.discriminator.parameters(), *self.cooccurrence.parameters()]
        ratio = h.r1_every / (h.r1_every + 1) if h.r1_every > 0 else 1.0
        d_lr = (h.d_lr or h.lr) * ratio
        opt_g = torch.optim.Adam(g_params, lr=h.lr, betas=betas)
        opt_d = torch.optim.Adam(d_params, lr=d_lr, betas=(betas[0] ** ratio, betas[1] ** ratio))
        return [opt_g, opt_d]

    # ------------------------------------------------------------------ V phase
    def on_train_start(self) -> None:
        """Fix the sample-grid batch; train the versatile classifier V once (not again on resume)."""
        for log in self.loggers:  # Lightning logged them before setup() filled in the vocabularies
            log.log_hyperparams(self.hparams)
        datamodule = getattr(self.trainer, "datamodule", None)
        if self._sample_batch is None and datamodule is not None and hasattr(datamodule, "val_dataloader"):
            self._sample_batch = next(iter(datamodule.val_dataloader()), None)
        if self.hparams.classifier_steps > 0 and not bool(self.classifier_trained):
            self.train_classifier(self._classifier_batches(), self.hparams.classifier_steps)
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                for tensor in [*self.classifier.parameters(), *self.classifier.buffers()]:
                    torch.distributed.broadcast(tensor.data, src=0)

    def _classifier_batches(self) -> Any:
        datamodule = getattr(self.trainer, "datamodule", None)
        loader = datamodule.train_dataloader() if datamodule is not None else self.trainer.train_dataloader
        while True:
            yielded = False
            for batch in loader:
                yielded = True
                yield batch
            if not yielded:
                raise DefectGanError("the training dataloader is empty")

    def train_classifier(self, batches: Any, steps: int) -> float:
        """Train V on real crops (donors with their class, canvases and goods as good), then freeze it.

        Returns:
            V's defect-class accuracy on the last batch.
        """
        self.classifier.requires_grad_(True).train()
        optimizer = torch.optim.Adam(self.classifier.parameters(), lr=self.hparams.classifier_lr)
        accuracy = 0.0
        for _, batch in zip(range(steps), batches, strict=False):
            batch = batch.to(self.device)
            images, classes, grades = _all_real(batch)
            out = self.classifier(images)
            loss = F.cross_entropy(out.class_logits, classes) + F.cross_entropy(out.grade_logits, grades)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            accuracy = float((out.class_logits.argmax(1) == classes).float().mean())
        self.classifier.requires_grad_(False).eval()
        self.classifier_trained.fill_(True)
        for log in self.loggers:
            log.log_metrics({"classifier/train_accuracy": accuracy}, step=self.global_step)
        return accuracy

    # ------------------------------------------------------------------ training
    def _backward(self, loss: Tensor) -> None:
        if self._trainer is None:
            loss.backward()
        else:
            self.manual_backward(loss)

    def _mask_ramp(self, donor: DefectBatch) -> Tensor:
        """Weight of mask-dependent losses: 1 with ground truth, warm-up then ramp without."""
        h = self.hparams
        ramp = min(1.0, max(0.0, (self.global_step - h.mask_warmup_steps) / max(1, h.mask_ramp_steps)))
        has_gt = (donor.mask_kind != MASK_KIND_IDS["none"]).float()
        return (has_gt + (1.0 - has_gt) * ramp).mean()

    def forward_passes(self, batch: GanBatch) -> dict[str, Any]:
        """Restore, transfer, identity, re-insert and cycle passes of one iteration."""
        if self.net.composite_path:
            return self.composite_passes(batch)
        net, h = self.net, self.hparams
        donor, canvas, good = batch.donor, batch.canvas, batch.good
        n = min(len(donor), len(canvas))
        a, k, p = donor.image[:n], donor.defect_class[:n], donor.grade[:n]
        b, q = canvas.image[:n], canvas.grade[:n]
        goods, q_n = good.image, good.grade
        zeros = torch.zeros_like(k)

        def drop(grade: Tensor) -> Tensor:
            unknown = torch.full_like(grade, net.unknown_grade)
            return torch.where(torch.rand(grade.shape, device=grade.device) < h.grade_dropout, unknown, grade)

        images = torch.cat([a, b, goods])
        enc = net.encode(images)
        enc_a, enc_b, enc_n = _split(enc, [n, n, len(goods)])
        s_a = enc_a.style(k)
        first = net.decode(
            images, enc,
            torch.cat([enc_a.z_d, enc_a.z_d, enc_n.z_d]), torch.cat([enc_a.l8, enc_a.l8, enc_n.l8]),
            torch.cat([torch.zeros_like(s_a), s_a, enc_n.style(torch.zeros_like(q_n))]),
            torch.cat([zeros, k, torch.zeros_like(q_n)]), drop(torch.cat([p, q, q_n])))
        restored, transfer, identity = torch.split(first.image, [n, n, len(goods)])
        m_r, m_t, m_n = torch.split(first.mask, [n, n, len(goods)])
        noisy = (restored.detach() + h.reinsert_noise * torch.randn_like(restored)).clamp(0.0, 1.0)
        second_in = torch.cat([noisy, transfer])
        enc2 = net.encode(second_in)
        _, enc_x = _split(enc2, [n, n])
        second = net.decode(second_in, enc2, torch.cat([enc_a.z_d, enc_x.z_d]), torch.cat([enc_a.l8, enc_x.l8]),
                            torch.cat([s_a, torch.zeros_like(s_a)]), torch.cat([k, zeros]), drop(torch.cat([p, q])))
        reinserted, cycled = torch.split(second.image, [n, n])
        m_cycle = second.mask[n:]
        region = torch.where((donor.mask_kind[:n] != MASK_KIND_IDS["none"])[:, None, None, None],
                             donor.mask[:n], m_r.detach())
        return {
            "n": n, "a": a, "b": b, "goods": goods, "k": k, "p": p, "q": q, "q_n": q_n,
            "enc": enc, "enc_a": enc_a, "enc_b": enc_b, "enc_n": enc_n, "enc_x": enc_x, "s_a": s_a,
            "restore_logits": first.mask_logits[:n], "transfer_logits": first.mask_logits[n:2 * n],
            "restored": restored, "transfer": transfer, "identity": identity,
            "m_r": m_r, "m_t": m_t, "m_n": m_n, "reinserted": reinserted, "cycled": cycled, "m_cycle": m_cycle,
            "region": region, "gt": donor.mask[:n], "kind": donor.mask_kind[:n],
        }

    def _drop_grade(self, grade: Tensor) -> Tensor:
        """Replace each grade by 'unknown grade' with probability ``grade_dropout``."""
        unknown = torch.full_like(grade, self.net.unknown_grade)
        return torch.where(torch.rand(grade.shape, device=grade.device) < self.hparams.grade_dropout, unknown, grade)

    def composite_passes(self, batch: GanBatch) -> dict[str, Any]:
        """The passes of ``defect_path="composite"``: the donor's real pixels are pasted, G refines.

        1. Restore ``A_hat`` and identity ``N_tilde`` as in the code path (G's own mask).
        2. Transfer ``X = G(paste(A -> B))`` in the pasted region; paired target
           ``A_rec = G(paste(jitter(A) -> stopgrad(A_hat)))`` must rebuild ``A``.
        3. Cycle ``B_tilde = G(X, code(X), 0, good, q)``.
        """
        net, h = self.net, self.hparams
        donor, canvas, good = batch.donor, batch.canvas, batch.good
        n = min(len(donor), len(canvas))
        a, k, p = donor.image[:n], donor.defect_class[:n], donor.grade[:n]
        b, q = canvas.image[:n], canvas.grade[:n]
        goods, q_n = good.image, good.grade
        zeros, zeros_n = torch.zeros_like(k), torch.zeros_like(q_n)
        enc = net.encode(torch.cat([a, b, goods]))
        enc_a, enc_b, enc_n = _split(enc, [n, n, len(goods)])
        s_a = enc_a.style(k)
        restore_in = torch.cat([a, goods])
        enc_r = _cat([enc_a, enc_n])
        first = net.decode(restore_in, enc_r, enc_r.z_d, enc_r.l8,
                           torch.cat([torch.zeros_like(s_a), enc_n.style(zeros_n)]), torch.cat([zeros, zeros_n]),
                           self._drop_grade(torch.cat([p, q_n])))
        restored, identity = torch.split(first.image, [n, len(goods)])
        m_r, m_n = torch.split(first.mask, [n, len(goods)])
        has_gt = (donor.mask_kind[:n] != MASK_KIND_IDS["none"])[:, None, None, None]
        defect = torch.where(has_gt, donor.mask[:n], (m_r.detach() > 0.5).to(a.dtype))
        gain = 1.0 + h.contrast_jitter * (2.0 * torch.rand(n, 1, 1, 1, device=a.device) - 1.0)
        background = (a * (1.0 - defect)).sum(dim=(2, 3), keepdim=True) / (1.0 - defect).sum(
            dim=(2, 3), keepdim=True).clamp_min(1.0)
        jittered = (background + gain * (a - background)).clamp(0.0, 1.0)
        paired_in, paired_region = net.composite(restored.detach(), jittered, defect)
        pasted, region = net.composite(b, a, defect)
        second_in = torch.cat([paired_in, pasted])
        enc2 = net.encode(second_in)
        second = net.decode(second_in, enc2, torch.cat([enc_a.z_d, enc_a.z_d]), torch.cat([enc_a.l8, enc_a.l8]),
                            torch.cat([s_a, s_a]), torch.cat([k, k]), self._drop_grade(torch.cat([p, q])),
                            torch.cat([paired_region, region]))
        reinserted, transfer = torch.split(second.image, [n, n])
        enc_x = net.encode(transfer)
        cycle = net.decode(transfer, enc_x, enc_x.z_d, enc_x.l8, torch.zeros_like(s_a), zeros, self._drop_grade(q))
        return {
            "n": n, "a": a, "b": b, "goods": goods, "k": k, "p": p, "q": q, "q_n": q_n,
            "enc": enc, "enc_a": enc_a, "enc_b": enc_b, "enc_n": enc_n, "enc_x": enc_x, "s_a": s_a,
            "restore_logits": first.mask_logits[:n], "transfer_logits": second.mask_logits[n:],
            "restored": restored, "transfer": transfer, "identity": identity,
            "m_r": m_r, "m_t": region, "m_n": m_n, "reinserted": reinserted, "cycled": cycle.image,
            "m_cycle": cycle.mask, "region": paired_region,
            "gt": donor.mask[:n], "kind": donor.mask_kind[:n], "pasted": pasted,
        }

    def _real_and_fake(self, f: dict[str, Any]) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        zeros_n, zeros_g = torch.zeros_like(f["k"]), torch.zeros_like(f["q_n"])
        real = torch.cat([f["a"], f["b"], f["goods"]])
        real_k = torch.cat([f["k"], zeros_n, zeros_g])
        real_q = torch.cat([f["p"], f["q"], f["q_n"]])
        fake = torch.cat([f["transfer"], f["restored"], f["reinserted"]])
        fake_k = torch.cat([f["k"], zeros_n, f["k"]])
        fake_q = torch.cat([f["q"], f["p"], f["p"]])
        return real, real_k, real_q, fake, fake_k, fake_q

    def discriminator_losses(self, f: dict[str, Any], r1: bool) -> dict[str, Tensor]:
        """Losses of the multi-task and co-occurrence discriminators (fakes detached)."""
        h = self.hparams
        t = h.augment_translation
        real, real_k, real_q, fake, fake_k, fake_q = self._real_and_fake(f)
        d_real = self.discriminator(augment(real, t), real_k, real_q)
        d_fake = self.discriminator(augment(fake.detach(), t), fake_k, fake_q)
        losses = {
            "d_adv": L.discriminator_adversarial(d_real.adversarial, d_fake.adversarial),
            "d_class": F.cross_entropy(d_real.class_logits, real_k),
            "d_grade": F.cross_entropy(d_real.grade_logits, real_q),
        }
        count = h.patches_per_image
        reference = sample_patches(f["a"], f["region"], count, self.patch)
        real_query = sample_patches(f["a"], f["region"], count, self.patch)
        fake_query = sample_patches(f["transfer"].detach(), f["m_t"].detach(), count, self.patch)
        losses["d_cooc"] = L.discriminator_adversarial(self.cooccurrence(real_query, reference),
                                                       self.cooccurrence(fake_query, reference))
        if r1:
            with torch.autocast(device_type=self.device.type, enabled=False):
                real_in = augment(real.float(), t).detach().requires_grad_(True)
                penalty = L.r1_penalty(self.discriminator(real_in, real_k, real_q).adversarial, real_in)
                query_in = real_query.float().detach().requires_grad_(True)
                cooc_penalty = L.r1_penalty(self.cooccurrence(query_in, reference.float()), query_in)
            losses["d_r1"] = penalty * (h.r1_gamma / 2.0 * h.r1_every)
            losses["d_cooc_r1"] = cooc_penalty * (h.cooccurrence_r1_gamma / 2.0 * h.r1_every)
        return losses

    def generator_losses(self, f: dict[str, Any], ramp: Tensor | float = 1.0) -> dict[str, Tensor]:
        """Unweighted generator-side loss terms (see :data:`loss.DEFAULT_WEIGHTS`)."""
        h = self.hparams
        t = h.augment_translation
        n, k, p, q = f["n"], f["k"], f["p"], f["q"]
        zeros = torch.zeros_like(k)
        _, _, _, fake, fake_k, fake_q = self._real_and_fake(f)
        d_fake = self.discriminator(augment(fake, t), fake_k, fake_q)
        adv_x, adv_r, adv_rec = torch.split(d_fake.adversarial, [n, n, n])
        cls_x, cls_r, _ = torch.split(d_fake.class_logits, [n, n, n])
        grd_x, grd_r, _ = torch.split(d_fake.grade_logits, [n, n, n])
        enc_a, enc_b, enc_x = f["enc_a"], f["enc_b"], f["enc_x"]
        losses = {
            "adv_transfer": L.generator_adversarial(adv_x),
            "adv_restore": L.generator_adversarial(adv_r),
            "adv_reinsert": L.generator_adversarial(adv_rec),
            "rec": F.l1_loss(f["reinserted"], f["a"]),
            "rec_masked": L.masked_l1(f["reinserted"], f["a"], f["region"]) * ramp,
            "cycle": F.l1_loss(f["cycled"], f["b"]),
            "identity": F.l1_loss(f["identity"], f["goods"]),
            "identity_mask": f["m_n"].mean(),
            "mask_cycle": (f["m_cycle"] - f["m_t"]).abs().mean() * ramp,
            "mask_area": (L.area_prior(f["m_t"], f["gt"], f["kind"], h.min_mask_area, h.max_mask_area)
                          + L.area_prior(f["m_r"], f["gt"], f["kind"], h.min_mask_area, h.max_mask_area)).mean()
            * ramp,
            "mask_binary": L.binary_prior(f["m_t"]) + L.binary_prior(f["m_r"]),
            "latent": (enc_x.z_d - enc_a.z_d.detach()).abs().mean()
            + (enc_x.style(k) - f["s_a"].detach()).abs().mean()
            + (1.0 - (enc_x.z_t * enc_b.z_t.detach()).sum(dim=1)).mean(),
            "d_heads": F.cross_entropy(cls_x, k) + F.cross_entropy(grd_x, q) + F.cross_entropy(cls_r, zeros)
            + F.cross_entropy(grd_r, p),
        }
        if bool(self.classifier_trained) and self.weights["v_critic"] > 0:
            v = self.classifier(torch.cat([f["transfer"], f["restored"]]))
            losses["v_critic"] = F.cross_entropy(v.class_logits, torch.cat([k, zeros])) + F.cross_entropy(
                v.grade_logits, torch.cat([q, p]))
        reference = sample_patches(f["a"], f["region"], h.patches_per_image, self.patch)
        query = sample_patches(f["transfer"], f["m_t"], h.patches_per_image, self.patch)
        losses["cooccurrence"] = L.generator_adversarial(self.cooccurrence(query, reference)) * ramp
        enc = f["enc"]
        all_classes = torch.cat([k, zeros, torch.zeros_like(f["q_n"])])
        losses["leak"] = F.cross_entropy(self.leak_class(enc.z_t), all_classes) + F.cross_entropy(
            self.leak_grade(enc_a.z_d.mean(dim=(2, 3))), p)
        losses["mask_supervision"] = (
            L.mask_supervision(f["restore_logits"], f["gt"], f["kind"])
            + L.mask_supervision(f["transfer_logits"], f["gt"], f["kind"])
            + L.mask_supervision(enc_a.l8, f["gt"], f["kind"]))
        if "pasted" in f:
            losses["self_reg"] = L.masked_l1(f["transfer"], f["pasted"], f["m_t"])
            if self.weights["plate"] > 0:  # off by default: not computed on every step for nothing
                losses["plate"] = L.plate_penalty(f["transfer"], f["pasted"], f["m_t"])
        losses["encoder_class"] = F.cross_entropy(enc.class_logits, all_classes)
        return losses

    def training_step(self, batch: GanBatch, batch_idx: int) -> None:
        """One D step and one G step (manual optimisation), then the EMA update."""
        opt_g, opt_d = self.optimizers()
        h = self.hparams
        step = self.global_step
        f = self.forward_passes(batch)
        ramp = self._mask_ramp(batch.donor)

        self.toggle_optimizer(opt_d)
        d_losses = self.discriminator_losses(f, r1=h.r1_every > 0 and step % h.r1_every == 0)
        d_total = sum(d_losses.values())
        opt_d.zero_grad(set_to_none=True)
        self._backward(d_total)
        # Straight to the torch optimizer so that global_step counts iterations (see module doc).
        getattr(opt_d, "optimizer", opt_d).step()
        self.untoggle_optimizer(opt_d)

        self.toggle_optimizer(opt_g)
        g_losses = self.generator_losses(f, ramp)
        g_total = sum(self.weights[name] * value for name, value in g_losses.items())
        opt_g.zero_grad(set_to_none=True)
        self._backward(g_total)
        opt_g.step()
        self.untoggle_optimizer(opt_g)
        self.update_ema()

        logs = {f"train/{name}": value.detach() for name, value in {**d_losses, **g_losses}.items()}
        logs.update({"train/d_total": d_total.detach(), "train/g_total": g_total.detach(),
                     "train/mask_transfer": f["m_t"].detach().mean(), "train/mask_ramp": torch.as_tensor(ramp)})
        self.log_dict(logs, batch_size=f["n"])
        self.log_dict({"g": g_total.detach(), "d": d_total.detach(), "rec": g_losses["rec"].detach()},
                      prog_bar=True, logger=False, batch_size=f["n"])

    @torch.no_grad()
    def update_ema(self) -> None:
        """Move the EMA copy of encoder + generator towards the live weights."""
        h = self.hparams
        decay = h.ema_decay
        if h.ema_rampup:
            decay = min(decay, (1.0 + self.global_step) / (10.0 + self.global_step))
        for ema, live in zip(self.net_ema.parameters(), self.net.parameters(), strict=True):
            ema.lerp_(live.detach(), 1.0 - decay)
        for ema, live in zip(self.net_ema.buffers(), self.net.buffers(), strict=True):
            ema.copy_(live)

    # ------------------------------------------------------------------ validation, samples, export
    def validation_step(self, batch: GanBatch, batch_idx: int) -> None:
        """Reconstruction and mask statistics of the EMA model on the fixed validation batch."""
        out = self.sample(batch)
        self.log_dict({"val/transfer_mask": out["mask"].mean(), "val/restore_l1": (out["restored"] - batch.donor.image[
            : len(out["restored"])]).abs().mean(), "val/identity_l1": out["identity_l1"]}, batch_size=len(batch.donor))

    @torch.no_grad()
    def sample(self, batch: GanBatch, net: DefectGanNet | None = None) -> dict[str, Tensor]:
        """Transfer donors onto canvases and restore donors with the EMA (or given) network."""
        net = net or self.net_ema
        n = min(len(batch.donor), len(batch.canvas))
        donor, canvas = batch.donor.image[:n], batch.canvas.image[:n]
        k, p, q = batch.donor.defect_class[:n], batch.donor.grade[:n], batch.canvas.grade[:n]
        enc_a = net.encode(donor)
        s_a = enc_a.style(k)
        zeros = torch.zeros_like(k)
        restored = net.decode(donor, enc_a, enc_a.z_d, enc_a.l8, torch.zeros_like(s_a), zeros, p)
        has_gt = (batch.donor.mask_kind[:n] != MASK_KIND_IDS["none"])[:, None, None, None]
        donor_mask = torch.where(has_gt, batch.donor.mask[:n], (restored.mask > 0.5).to(donor.dtype))
        transfer = net.transfer(canvas, enc_a.z_d, enc_a.l8, s_a, k, q, donor, donor_mask)
        if net.composite_path:
            from anomalib_defectgan.data.blending import changed_mask

            pasted = net.composite(canvas, donor, donor_mask)[0]
            label = changed_mask(transfer.image, canvas).to(canvas.dtype)
        else:
            pasted, label = canvas, transfer.mask
        enc_n = net.encode(batch.good.image)
        zeros_n = torch.zeros_like(batch.good.grade)
        identity = net.decode(batch.good.image, enc_n, enc_n.z_d, enc_n.l8, enc_n.style(zeros_n), zeros_n,
                              batch.good.grade)
        return {"donor": donor, "canvas": canvas, "pasted": pasted, "transfer": transfer.image, "mask": label,
                "restored": restored.image, "restore_mask": restored.mask,
                "identity_l1": (identity.image - batch.good.image).abs().mean()}

    def _log_dir(self) -> Path:
        trainer = self.trainer
        return Path(trainer.log_dir or trainer.default_root_dir)

    def save_sample_grid(self, name: str, batch: GanBatch | None = None, log_dir: Path | None = None) -> Path | None:
        """Write a PNG grid (donor | canvas | pasted | transfer | mask | restored) under ``<log_dir>/samples``.

        ``pasted`` is the donor's defect pasted onto the canvas (the canvas itself for the code path).
        """
        from torchvision.utils import make_grid

        from anomalib_defectgan.data.image_io import write_image

        batch = batch or self._sample_batch
        if batch is None:
            return None
        batch = batch.to(self.device)
        out = self.sample(batch)
        count = min(self.hparams.sample_count, len(out["donor"]))
        channels = out["donor"].shape[1]
        columns = [out["donor"], out["canvas"], out["pasted"], out["transfer"], out["mask"].expand(-1, channels, -1, -1),
                   out["restored"]]
        tiles = torch.stack([c[:count].float().cpu() for c in columns], dim=1).flatten(0, 1)
        grid = make_grid(tiles, nrow=len(columns), padding=2, pad_value=1.0)
        array = (grid.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        path = (log_dir or self._log_dir()) / "samples" / f"{name}.png"
        write_image(path, array[..., 0] if channels == 1 else np.ascontiguousarray(array))
        for log in self.loggers:
            experiment = getattr(log, "experiment", None)
            if hasattr(experiment, "add_image"):
                experiment.add_image("samples", grid.clamp(0, 1), global_step=self.global_step)
        return path

    def on_train_batch_end(self, outputs: Any, batch: GanBatch, batch_idx: int) -> None:
        """Keep a batch for sample grids and write one every ``sample_every`` iterations."""
        if self._sample_batch is None:
            self._sample_batch = batch
        every = self.hparams.sample_every
        if every > 0 and self.global_step % every == 0:
            log_dir = self._log_dir()  # a collective under DDP: every rank must ask
            if self.trainer.is_global_zero:
                self.save_sample_grid(f"step_{self.global_step:07d}", log_dir=log_dir)

    def on_train_end(self) -> None:
        """Write the final sample grid and the standalone generator."""
        log_dir = self._log_dir()  # a collective under DDP: every rank must ask
        if not self.trainer.is_global_zero:
            return
        path = self.save_sample_grid("final", log_dir=log_dir)
        if path is not None:
            logger.info("sample grid: %s", path)
        if self.hparams.export_generator:
            out = self.export_generator(log_dir / "generator")
            logger.info("generator weights: %s", out)

    def export_generator(self, out_dir: str | Path) -> Path:
        """Write ``generator.safetensors`` + ``generator.json`` (EMA weights) into ``out_dir``."""
        from anomalib_defectgan.models.defect_gan.inference import save_generator

        h = self.hparams
        critic = self.classifier if bool(self.classifier_trained) else None
        return save_generator(self.net_ema, self.net_config(), h.classes, h.grades, h.crop_size, out_dir,
                              critic=critic, critic_width=h.classifier_width)


def _all_real(batch: GanBatch) -> tuple[Tensor, Tensor, Tensor]:
    """All real crops of a batch with their class (donors' class, good otherwise) and grade."""
    images = torch.cat([batch.donor.image, batch.canvas.image, batch.good.image])
    classes = torch.cat([batch.donor.defect_class, torch.zeros_like(batch.canvas.defect_class),
                         torch.zeros_like(batch.good.defect_class)])
    grades = torch.cat([batch.donor.grade, batch.canvas.grade, batch.good.grade])
    return images, classes, grades
