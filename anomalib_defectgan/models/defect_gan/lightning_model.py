"""DefectGan: the Lightning module that trains the layered defect-transfer GAN.

One training iteration (manual optimisation): the forward passes (:mod:`.passes`), one
discriminator step, one generator step (:mod:`.loss`), then the EMA update.

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
import torch
from torch import Tensor

from anomalib_defectgan.data.batch import MASK_KIND_IDS, DefectBatch, GanBatch
from anomalib_defectgan.errors import DefectGanError
from anomalib_defectgan.models.defect_gan.critic import CriticPretraining, VersatileClassifier, train_critic
from anomalib_defectgan.models.defect_gan.discriminator import (
    CooccurrenceDiscriminator,
    LeakAdversary,
    MultiTaskDiscriminator,
)
from anomalib_defectgan.models.defect_gan.loss import Critics, DefectGanLoss, resolve_weights
from anomalib_defectgan.models.defect_gan.passes import (
    PAIRED_BACKGROUNDS,
    GanPasses,
    SamplePasses,
    forward_passes,
    sample_passes,
)
from anomalib_defectgan.models.defect_gan.sample_grid import SampleGrids, log_dir
from anomalib_defectgan.models.defect_gan.torch_model import DefectGanNet
from anomalib_defectgan.models.defect_gan.vocabulary import (
    check_checkpoint,
    check_crop_size,
    check_precision,
    checked_vocab,
)

logger = logging.getLogger(__name__)

NET_ARGS = ("base_channels", "max_channels", "zd_channels", "sd_dim", "zt_dim", "w_dim", "embed_dim",
            "mapping_layers", "mask_bias", "canvas_skip", "code_levels", "defect_path", "composite_feather",
            "region_dilation", "region_feather", "composite_mode", "change_region")


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
        zd_channels: Channels of the spatial defect code ``z_d``.
        sd_dim: Size of the defect-style vector ``s_d``.
        zt_dim: Size of the texture code ``z_t``.
        w_dim: Size of the modulation style ``w``.
        embed_dim: Size of the class and grade embeddings.
        mapping_layers: Layers of the style mapping MLP.
        mask_bias: Initial coarse mask logit (masks start at ``sigmoid(mask_bias)``).
        canvas_skip: Foreground starts as the canvas (a logit skip), not painted from features.
        code_levels: Resolution levels; the defect code lives at ``H / 2**(code_levels - 1)``.
        defect_path: ``"code"`` (codes only) or ``"composite"`` (also the donor's real pixels).
        composite_feather: Gaussian sigma (px) of the pasted defect's edge (``"composite"``).
        region_dilation: Pixels the region G may change grows beyond the pasted edge (``"composite"``).
        region_feather: Sigma (px) over which G's change fades out beyond that region (0: hard edge).
        composite_mode: ``"paste"``, ``"residual"``, ``"adaptive"`` or ``"matched"``: how the donor's defect is put
            on the canvas.
        change_region: ``"halo"`` (the pasted defect and its feathered edge) or ``"defect"`` (the donor's
            defect pixels): where G may change the composite (``"composite"``). ``base_channels`` to
            ``change_region`` are :class:`DefectGanNet`'s arguments, documented in full there.
        contrast_jitter: ``"composite"`` training: the donor's defect is put back on its own restored
            background with its contrast scaled by a random factor in ``1 +- contrast_jitter``, and G
            must rebuild the real donor from that (the paired target).
        paired_background: What the paired target puts the donor's defect back on: ``"restored"``
            (G's restoration ``A_hat``) or ``"filled"`` (the donor itself, its defect pixels filled
            in from the material around them: no restoration trace for G to learn to correct).
        cycle_through_transfer: ``"composite"`` training: whether the cycle pass (restoring the
            transfer ``X``) and the terms built on it (``cycle``, ``mask_cycle``, ``latent``) train
            G's transfer too. They reward a transfer the encoder finds and removes easily, i.e. a
            stronger defect than the real one; False restores ``stopgrad(X)`` (the encoder and the
            restoration still learn from it).
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
        change_region: str = "halo",
        contrast_jitter: float = 0.4,
        paired_background: str = "restored",
        cycle_through_transfer: bool = True,
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
        if paired_background not in PAIRED_BACKGROUNDS:
            raise DefectGanError(f"paired_background must be one of {PAIRED_BACKGROUNDS}, got {paired_background!r}")
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.weights = resolve_weights(loss_weights)
        self.loss = DefectGanLoss(self.weights, augment_translation, patches_per_image, r1_gamma,
                                  cooccurrence_r1_gamma, r1_every, min_mask_area, max_mask_area)
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
        given = checked_vocab(self.hparams, classes, grades, channels, crop_size)
        if self.built:
            return
        for name, value in given.items():
            self.hparams[name] = value
        self._build()

    def _build(self) -> None:
        h = self.hparams
        check_crop_size(h.crop_size, h.code_levels)
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
        check_precision(self.trainer)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse a checkpoint of another kind or of other vocabularies (:mod:`.vocabulary`)."""
        check_checkpoint(checkpoint, self.hparams if self.built else None)

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

    # ------------------------------------------------------------------ callbacks, V
    def configure_callbacks(self) -> list[pl.Callback]:
        """The sample grids (:class:`~.sample_grid.SampleGrids`), then V's pretraining (:class:`~.critic.CriticPretraining`)."""
        h = self.hparams
        return [SampleGrids(h.sample_every, h.sample_count), CriticPretraining(h.classifier_steps)]

    def on_train_start(self) -> None:
        """Log the hyper-parameters again: Lightning logged them before ``setup`` filled in the vocabularies."""
        for log in self.loggers:
            log.log_hyperparams(self.hparams)

    def train_classifier(self, batches: Any, steps: int) -> float:
        """Train the critic V on real crops, then freeze it (:func:`~.critic.train_critic`).

        Returns:
            V's defect-class accuracy on the last batch.
        """
        accuracy = train_critic(self.classifier, batches, steps, self.hparams.classifier_lr, self.device)
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

    def forward_passes(self, batch: GanBatch) -> GanPasses:
        """Restore, transfer, identity, re-insert and cycle passes of one iteration (:mod:`.passes`)."""
        h = self.hparams
        return forward_passes(self.net, batch, h.grade_dropout, h.reinsert_noise, h.contrast_jitter,
                              h.paired_background, h.cycle_through_transfer)

    @property
    def critics(self) -> Critics:
        """The networks the losses judge the generator with (V only once it is trained)."""
        return Critics(self.discriminator, self.cooccurrence, self.leak_class, self.leak_grade,
                       self.classifier if bool(self.classifier_trained) else None, self.patch)

    def training_step(self, batch: GanBatch, batch_idx: int) -> None:
        """One D step and one G step (manual optimisation), then the EMA update."""
        opt_g, opt_d = self.optimizers()
        h = self.hparams
        step = self.global_step
        f = self.forward_passes(batch)
        ramp = self._mask_ramp(batch.donor)

        self.toggle_optimizer(opt_d)
        d_losses = self.loss.discriminator_losses(f, self.critics, r1=h.r1_every > 0 and step % h.r1_every == 0)
        d_total = sum(d_losses.values())
        opt_d.zero_grad(set_to_none=True)
        self._backward(d_total)
        # Straight to the torch optimizer so that global_step counts iterations (see module doc).
        getattr(opt_d, "optimizer", opt_d).step()
        self.untoggle_optimizer(opt_d)

        self.toggle_optimizer(opt_g)
        g_losses = self.loss.generator_losses(f, self.critics, ramp)
        g_total = self.loss.generator_total(g_losses)
        opt_g.zero_grad(set_to_none=True)
        self._backward(g_total)
        opt_g.step()
        self.untoggle_optimizer(opt_g)
        self.update_ema()

        logs = {f"train/{name}": value.detach() for name, value in {**d_losses, **g_losses}.items()}
        logs.update({"train/d_total": d_total.detach(), "train/g_total": g_total.detach(),
                     "train/mask_transfer": f.m_t.detach().mean(), "train/mask_ramp": torch.as_tensor(ramp)})
        self.log_dict(logs, batch_size=f.n)
        self.log_dict({"g": g_total.detach(), "d": d_total.detach(), "rec": g_losses["rec"].detach()},
                      prog_bar=True, logger=False, batch_size=f.n)

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

    # ------------------------------------------------------------------ validation, export
    def validation_step(self, batch: GanBatch, batch_idx: int) -> None:
        """Reconstruction and mask statistics of the EMA model on the fixed validation batch."""
        out = self.sample(batch)
        self.log_dict({"val/transfer_mask": out.mask.mean(),
                       "val/restore_l1": (out.restored - batch.donor.image[: len(out.restored)]).abs().mean(),
                       "val/identity_l1": out.identity_l1}, batch_size=len(batch.donor))

    def sample(self, batch: GanBatch, net: DefectGanNet | None = None) -> SamplePasses:
        """Transfer donors onto canvases and restore donors with the EMA (or given) network."""
        return sample_passes(net or self.net_ema, batch)

    def on_train_end(self) -> None:
        """Write the standalone generator (after :class:`~.sample_grid.SampleGrids` wrote the final grid)."""
        folder = log_dir(self.trainer)  # a collective under DDP: every rank must ask
        if self.trainer.is_global_zero and self.hparams.export_generator:
            logger.info("generator weights: %s", self.export_generator(folder / "generator"))

    def export_generator(self, out_dir: str | Path) -> Path:
        """Write ``generator.safetensors`` + ``generator.json`` (EMA weights) into ``out_dir``."""
        from anomalib_defectgan.models.defect_gan.inference import save_generator

        h = self.hparams
        critic = self.classifier if bool(self.classifier_trained) else None
        return save_generator(self.net_ema, self.net_config(), h.classes, h.grades, h.crop_size, out_dir,
                              critic=critic, critic_width=h.classifier_width)

