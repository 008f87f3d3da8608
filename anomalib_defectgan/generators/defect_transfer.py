"""DefectTransferGenerator: the defect-transfer GAN as an anomalib synthetic-anomaly generator.

For each chosen image: pick a donor defect from the bank (by class weights), pick one of its
orientations (flips; quarter turns only if asked) and a position, run the GAN's transfer on a
``crop_size`` window of the image at that position only, and composite the window back. Cost
follows the window, not the image, and any image size works (images smaller than a window are
padded for synthesis and cropped back).

Donor codes are computed once per (checkpoint, bank, orientation set) and cached in a
safetensors file (``cache_dir``, default ``~/.cache/anomalib_defectgan`` or the
``ANOMALIB_DEFECTGAN_CACHE`` environment variable), keyed by the SHA-256 of the checkpoint
weights and of the bank's files.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from anomalib_defectgan.data.blending import CHANGE_THRESHOLD, changed_mask
from anomalib_defectgan.data.image_contract import as_batch, as_output, to_channels
from anomalib_defectgan.generators.class_sampler import ClassSampler
from anomalib_defectgan.generators.defect_bank import DefectBank, DefectBankError, load_bank
from anomalib_defectgan.generators.placement import Placement, overlap, uniform_int

BACKENDS = ("torch", "openvino")
MASK_SOURCES = ("gan", "donor")
PLACEMENTS = ("defect", "window")
CODES_VERSION = "5"

logger = logging.getLogger(__name__)


def cut_donors(bank: DefectBank, crop_size: int) -> Counter[str]:
    """Per class, the donors whose defect's bounding box is larger than a ``crop_size`` window."""
    return Counter(d.defect_class for d in bank.donors if max(d.extent) > crop_size)


def cut_donors_warning(bank: DefectBank, crop_size: int, cut: Counter[str] | None = None) -> str | None:
    """What to tell a user whose donors do not fit the GAN's window (None when they all do).

    ``cut``: :func:`cut_donors` of ``bank``, when already counted.
    """
    cut = cut_donors(bank, crop_size) if cut is None else cut
    if not cut:
        return None
    return (f"{sum(cut.values())} of {len(bank)} donors of {bank.source} are larger than the GAN's {crop_size} px "
            f"window ({dict(cut)}): only a window of each is painted, the rest of the defect is cut off; paint "
            "with a window that covers your defects (DefectTransferGenerator window, --window) or train the GAN "
            "with such a data crop_size")


def gain_bounded_scale(base: Tensor, change: Tensor, max_gain: float) -> Tensor:
    """Per item, the largest ``t`` in [0, 1] with ``|base + t * change| <= max_gain * |base|`` (L2 over the item).

    ``base`` is a composite's change to its canvas and ``change`` G's learned change on top of it,
    both ``[N, ...]``; ``max_gain >= 1``, so ``t = 0`` always meets the bound.
    """
    a, b = base.flatten(1).double(), change.flatten(1).double()
    aa, ab, bb = (a * a).sum(1), (a * b).sum(1), (b * b).sum(1)
    # |a + t b|^2 = g^2 |a|^2  <=>  bb t^2 + 2 ab t + (1 - g^2) aa = 0; its larger root is >= 0
    root = (-ab + (ab * ab + bb * (max_gain**2 - 1.0) * aa).clamp_min(0.0).sqrt()) / bb.clamp_min(1e-30)
    return torch.where(bb > 0, root.clamp(0.0, 1.0), torch.ones_like(bb)).to(base.dtype)


def default_cache_dir() -> Path:
    """``$ANOMALIB_DEFECTGAN_CACHE`` or ``~/.cache/anomalib_defectgan``."""
    return Path(os.environ.get("ANOMALIB_DEFECTGAN_CACHE", Path.home() / ".cache" / "anomalib_defectgan"))


def orientations(rotate90: bool) -> list[Placement]:
    """The donor orientations encoded: 4 flips, or all 8 symmetries of the square with quarter turns."""
    turns = (0, 1) if rotate90 else (0,)
    return [Placement(0, 0, bool(h), bool(v), r) for r in turns for v in (0, 1) for h in (0, 1)]


def _weights_file(checkpoint: str | Path) -> Path:
    """The ``.safetensors`` file of a generator given as a folder, its ``.safetensors`` or its ``.json``."""
    from anomalib_defectgan.models.defect_gan.inference import WEIGHTS_NAME

    path = Path(checkpoint)
    if path.is_dir():
        return path / WEIGHTS_NAME
    return path.with_suffix(".safetensors") if path.suffix == ".json" else path


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class DefectTransferGenerator(nn.Module):
    """Paint real donor defects onto images with the defect-transfer GAN (anomalib generator contract).

    ``gen(images) -> (augmented, mask)`` with the contract of
    :mod:`anomalib_defectgan.data.image_contract` (that of anomalib's ``PerlinAnomalyGenerator``), so
    it can be DRAEM's ``augmenter`` or GLASS's ``model.augmentor``. The GAN is kept outside the
    module tree (it is not part of a host model's ``state_dict``, optimiser or ``train()`` mode)
    and follows the input's device.

    Args:
        checkpoint: Generator folder (``generator.safetensors`` + ``generator.json``) or either file.
        defect_bank: Manifest / folder of donors, or a loaded :class:`DefectBank`.
        probability: Chance that an image gets a defect.
        classes: Use only these defect classes (None: every bank class the GAN knows).
        class_weights: Relative weight of each entry of ``classes``.
        seed: Seed of a private random generator (None: torch's global random state).
        device: Device for the GAN (None: the device of each input batch).
        backend: ``"torch"`` or ``"openvino"`` (transfer runs as an OpenVINO model on the CPU).
        grade: Grade name of the target images if the GAN was trained on it (None: unknown grade).
        mask_threshold: Soft-mask value below which a pixel is left untouched; the returned mask
            is exactly the pixels at or above it (``mask_source="gan"``).
        mask_source: Which pixels a code-path GAN's transfer may change (a ``defect_path="composite"``
            GAN changes only the pasted donor defect, grown by its feathered edge, and ignores this):
            ``"donor"`` (default), the
            donor's labelled mask (oriented like the donor, grown by ``mask_dilation`` px), which the
            spatial defect code follows: masks as tight as the donor's label, nothing painted away
            from the defect; or ``"gan"``, the GAN's own soft mask at ``mask_threshold`` (use it
            when donor masks are loose boxes, e.g. NEU-DET). ``donor`` gave lower classifier error
            on all three new-grade benchmarks (docs/benchmarks.md).
        mask_dilation: Pixels the donor mask is grown by (``mask_source="donor"``), so the rim
            the GAN blends around a defect is kept.
        min_change: Pixels the transfer changed by less than this (mean absolute change over
            channels, images in [0, 1]) are left as they were and not claimed by the mask, so a
            defect the GAN did not render is not labelled: the returned mask is exactly the pixels
            that changed. Default :data:`~anomalib_defectgan.data.blending.CHANGE_THRESHOLD`
            (2 grey levels); 0 keeps every pixel of the region, changed or not.
        critic_redraws: Redraw (donor, orientation and window) a transfer that the GAN's frozen critic
            V does not read as the donor's class, up to this many times; the last draw is kept
            either way (0: off; needs a generator saved with its critic, ``critic.safetensors``).
        change_scale: A composite-path GAN's learned change, scaled: the output is
            ``composite + change_scale * (G(composite) - composite)`` (1: G's output as trained;
            0: the composite alone, the donor's defect put on the canvas with no learned change).
            Ignored by a code-path GAN.
        max_gain: A composite-path GAN may not make a transfer stronger than ``max_gain`` times
            its composite: where the output's change to the canvas (L2 over the window) exceeds
            that, G's learned change is scaled down (per transfer, the largest factor in [0, 1]
            that meets the bound), so G can move, blend and shade the defect but not amplify it.
            None (default): no bound. One of three trainings of one config learned to make
            scratches five times as strong as real, and its classifiers missed faint real
            scratches; ``max_gain`` 1 gave them back, not a lower error (docs/benchmarks.md,
            2026-12-07 thirteenth run). Ignored by a code-path GAN.
        min_strength: Each transfer's change to its canvas is scaled by a factor drawn uniformly
            from ``[min_strength, 1]`` (1, the default: as painted, and no draw). Below 1, some
            synthetic defects are fainter than their donors, as many real defects are; the mask
            is then the pixels that still changed by ``min_change``. A classifier trained only on
            salient transfers scores faint real defects far below its synthetic validation
            defects (docs/benchmarks.md, 2026-12-03).
        composite_mode: How a composite-path GAN puts the donor's defect on the canvas before G
            refines it, overriding the mode in its ``generator.json`` (None: that mode).
            ``"paste"`` carries the donor's own pixels around the defect (right when donors and
            canvases are the same material: few-shot on one line); ``"adaptive"`` / ``"residual"``
            add only the defect's change (right for a new grade: no foreign plate). Paste was
            measured on SD-saliency (docs/benchmarks.md, 2026-12-03 eighth run), adaptive on
            the steel world (sixth run); paste on a new grade with the same weights was not.
        change_region: Where a composite-path GAN may change its composite, overriding its
            ``generator.json`` (None: its own): ``"halo"``, the pasted defect and its feathered
            edge; ``"defect"``, the donor's defect pixels only, so G cannot lay a plate around a
            thin defect (``DefectGanNet``'s ``change_region``).
        rotate90: Also use quarter turns of donors (off: rolled steel is directional).
        window: Side (px) of the window the GAN paints on (None: its training crop size). The GAN
            is convolutional, so a composite-path GAN trained on small crops can paint donors
            larger than them whole; a multiple of the GAN's code stride.
        placement: Where a defect lands. ``"defect"`` (default): its bounding box uniformly
            inside the image (anywhere when it is larger), as ``CutPasteGenerator`` places its
            donors; the GAN's window follows the defect and may stick out of the image (the GAN
            sees replicated border pixels there). ``"window"``: the window uniformly inside the
            image (grown by ``edge_margin``), the defect at its centre: with a window as large as
            the image every defect lands in the image centre, and a classifier trained on them
            learns where defects are (docs/benchmarks.md, 2026-12-07 twelfth run).
        edge_margin: ``placement="window"``: how far (px) a window may stick out of the image (0,
            the default: windows stay inside; None: a quarter of the crop size). Windows sticking
            out gave lower AUROC on SD-saliency (docs/benchmarks.md, 2026-12-02 third run).
        cache_dir: Where donor codes are cached (None: :func:`default_cache_dir`).
        openvino_model: ``transfer.xml`` written by ``defectgan export`` (None with the openvino
            backend: the transfer graph is converted in memory at start-up).
        openvino_threads: OpenVINO inference threads (None: its default).

    Example:
        >>> gen = DefectTransferGenerator("runs/gan/generator", "datasets/steel/manifest.csv", seed=0)
        >>> augmented, mask = gen(torch.rand(8, 1, 256, 256))
    """

    def __init__(
        self,
        checkpoint: str | Path,
        defect_bank: str | Path | DefectBank,
        probability: float = 0.5,
        classes: Sequence[str] | None = None,
        class_weights: Sequence[float] | None = None,
        seed: int | None = None,
        device: str | torch.device | None = None,
        backend: str = "torch",
        grade: str | None = None,
        mask_threshold: float = 0.1,
        mask_source: str = "donor",
        mask_dilation: int = 2,
        min_change: float = CHANGE_THRESHOLD,
        critic_redraws: int = 0,
        change_scale: float = 1.0,
        max_gain: float | None = None,
        min_strength: float = 1.0,
        composite_mode: str | None = None,
        change_region: str | None = None,
        rotate90: bool = False,
        window: int | None = None,
        placement: str = "defect",
        edge_margin: int | None = 0,
        cache_dir: str | Path | None = None,
        openvino_model: str | Path | None = None,
        openvino_threads: int | None = None,
    ) -> None:
        super().__init__()
        from anomalib_defectgan.models.defect_gan.inference import load_generator
        from anomalib_defectgan.models.defect_gan.torch_model import CHANGE_REGIONS, COMPOSITE_MODES

        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"probability must be in [0, 1], got {probability}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if mask_source not in MASK_SOURCES:
            raise ValueError(f"mask_source must be one of {MASK_SOURCES}, got {mask_source!r}")
        if mask_dilation < 0:
            raise ValueError(f"mask_dilation must be >= 0, got {mask_dilation}")
        if placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
        if not 0.0 <= min_change < 1.0:
            raise ValueError(f"min_change must be in [0, 1), got {min_change}")
        if critic_redraws < 0:
            raise ValueError(f"critic_redraws must be >= 0, got {critic_redraws}")
        if not 0.0 <= change_scale <= 1.0:
            raise ValueError(f"change_scale must be in [0, 1], got {change_scale}")
        self.change_scale = float(change_scale)
        if max_gain is not None and not max_gain >= 1.0:
            raise ValueError(f"max_gain must be at least 1 (the composite's own strength) or None, got {max_gain}")
        self.max_gain = None if max_gain is None else float(max_gain)
        if not 0.0 < min_strength <= 1.0:
            raise ValueError(f"min_strength must be in (0, 1], got {min_strength}")
        self.min_strength = float(min_strength)
        gan = load_generator(checkpoint, device=device or "cpu")
        if critic_redraws and gan.critic is None:
            raise ValueError(f"critic_redraws needs the GAN's critic V, and {checkpoint} has none (critic.safetensors "
                             "is written by 'defectgan fit' when V was trained: classifier_steps > 0)")
        self.critic_redraws = int(critic_redraws)
        for name, value, choices in (("composite_mode", composite_mode, COMPOSITE_MODES),
                                     ("change_region", change_region, CHANGE_REGIONS)):
            if value is None:
                continue
            if value not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {value!r}")
            if not gan.needs_donor_pixels:
                raise ValueError(f"{name} applies to a composite-path GAN; {checkpoint} is a code-path GAN "
                                 f"(defect_path 'code'): leave {name} out")
            if openvino_model is not None and value != getattr(gan.net, name):
                raise ValueError(f"openvino_model {openvino_model} was exported with {name} "
                                 f"{getattr(gan.net, name)!r}, not {value!r}: leave openvino_model out "
                                 "(converted at start-up)")
            setattr(gan.net, name, value)
        self.__dict__["gan"] = gan  # not a submodule: see the class docstring
        self.bank = load_bank(defect_bank, classes)
        known = [c for c in self.bank.classes if c in gan.classes[1:]]
        wanted = list(classes) if classes is not None else known
        weights = list(class_weights) if class_weights is not None else [1.0] * len(wanted)
        if len(weights) != len(wanted):
            raise ValueError(f"class_weights has {len(weights)} entries for {len(wanted)} classes {wanted}")
        usable = [(c, w) for c, w in zip(wanted, weights, strict=True) if c in known]
        if not usable:
            raise DefectBankError(f"defect bank {self.bank.source}: no usable defects for classes {wanted}; the bank "
                                  f"has {self.bank.classes}, the generator knows {gan.classes[1:]}")
        stride = gan.net.code_stride
        if window is not None and (int(window) <= 0 or int(window) % stride):
            raise ValueError(f"window must be a positive multiple of the GAN's code stride {stride}, got {window}")
        if window is not None and openvino_model is not None and int(window) != gan.crop_size:
            raise ValueError(f"openvino_model {openvino_model} was exported for the GAN's {gan.crop_size} px crop, "
                             f"not a {window} px window: leave openvino_model out (converted at start-up)")
        self.window = gan.crop_size if window is None else int(window)
        cut = cut_donors(self.bank, self.window)
        #: Donors whose defect is larger than the GAN's window: they are painted cut to the window.
        self.donors_cut = sum(cut.values())
        if cut:
            logger.warning(cut_donors_warning(self.bank, self.window, cut))
        self.sampler = ClassSampler(self.bank.donor_classes, [c for c, _ in usable], [w for _, w in usable])
        self.probability = probability
        self.grade = grade
        self.mask_threshold = mask_threshold
        self.mask_source = mask_source
        self.mask_dilation = int(mask_dilation)
        self.min_change = float(min_change)
        self._grown_masks: Tensor | None = None
        self.rotate90 = rotate90
        self.device = torch.device(device) if device is not None else None
        self.backend = backend
        self.orientations = orientations(rotate90)
        self.placement = placement
        self.edge_margin = self.window // 4 if edge_margin is None else int(edge_margin)
        self.checkpoint_hash = _file_hash(_weights_file(checkpoint))
        self.codes = self._donor_codes(Path(cache_dir) if cache_dir is not None else default_cache_dir())
        self._extents = self._defect_extents()
        self.rng: torch.Generator | None = None
        self.reseed(seed)
        self.last_info: list[dict[str, Any] | None] = []
        self.__dict__["openvino"] = None
        if backend == "openvino":
            from anomalib_defectgan.generators.openvino_backend import OpenVinoTransfer

            self.__dict__["openvino"] = (
                OpenVinoTransfer(openvino_model, threads=openvino_threads) if openvino_model is not None
                else OpenVinoTransfer.from_generator(gan, threads=openvino_threads, size=self.window))

    @property
    def crop_size(self) -> int:
        """Side of the window the GAN runs on (:attr:`window`)."""
        return self.window

    def reseed(self, seed: int | None) -> None:
        """Restart the private random generator from ``seed`` (None: use torch's global state)."""
        self.rng = None if seed is None else torch.Generator().manual_seed(int(seed))

    def cache_key(self) -> str:
        """Key of the donor-code cache: checkpoint weights, bank contents, crop size, orientations."""
        parts = [CODES_VERSION, self.checkpoint_hash, self.bank.digest, str(self.crop_size), str(self.rotate90)]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]

    def _donor_codes(self, cache_dir: Path) -> dict[str, Tensor]:
        """Codes ``[donors, orientations, ...]`` of every bank donor, from the cache or encoded now."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file, save_file

        from anomalib_defectgan.utils.atomic import atomic_path

        path = cache_dir / f"donor-codes-{self.cache_key()}.safetensors"
        if path.is_file():
            try:
                return load_file(str(path))
            except (SafetensorError, OSError):
                pass  # a damaged cache file is simply rebuilt
        gan, size = self.gan, self.crop_size
        ids = [gan.classes.index(c) if c in gan.classes else 0 for c in self.bank.donor_classes]
        views_per_donor = len(self.orientations)
        z_d, coarse_mask_logits, s_d, masks, pixels = [], [], [], [], []
        for start in range(0, len(self.bank), 16):  # 16 donors x their orientations per encoder call
            chunk = range(start, min(start + 16, len(self.bank)))
            windows = [self.bank.window(index, size, gan.channels) for index in chunk]
            pixels.append(torch.stack([image for image, _ in windows]))
            views = torch.stack([o.orient(image) for image, _ in windows for o in self.orientations])
            masks.append(torch.stack([o.orient(mask) >= 0.5 for _, mask in windows for o in self.orientations])
                         .unflatten(0, (len(chunk), views_per_donor)).to(torch.uint8))
            codes = gan.encode(views, defect_class=[max(ids[index], 1) for index in chunk for _ in self.orientations])
            z_d.append(codes.z_d.cpu().unflatten(0, (len(chunk), views_per_donor)))
            coarse_mask_logits.append(codes.coarse_mask_logits.cpu().unflatten(0, (len(chunk), views_per_donor)))
            s_d.append(codes.s_d.cpu().unflatten(0, (len(chunk), views_per_donor)))
        tensors = {"z_d": torch.cat(z_d).contiguous(), "coarse_mask_logits": torch.cat(coarse_mask_logits).contiguous(),
                   "s_d": torch.cat(s_d).contiguous(), "class_id": torch.tensor(ids, dtype=torch.long),
                   "mask": torch.cat(masks).contiguous(), "window": torch.cat(pixels).contiguous()}
        try:
            with atomic_path(path) as tmp:
                save_file(tensors, str(tmp), metadata={"checkpoint_sha256": self.checkpoint_hash,
                                                       "bank_sha256": self.bank.digest})
        except OSError:
            pass  # an unwritable cache only costs re-encoding next time
        return tensors

    def donor_pixels(self, donor: Tensor, orient: Tensor) -> tuple[Tensor, Tensor]:
        """The donors' windows ``[N, C_gan, c, c]`` and defect masks ``[N, 1, c, c]``, oriented."""
        images, masks = [], []
        for d, o in zip(donor.tolist(), orient.tolist(), strict=True):
            images.append(self.orientations[o].orient(self.codes["window"][d]))
            masks.append(self.codes["mask"][d, o].float())
        return torch.stack(images), torch.stack(masks)

    def _transfer(self, canvas: Tensor, donor: Tensor, orient: Tensor) -> tuple[Tensor, Tensor]:
        """Run the GAN on windows ``[N, C_gan, c, c]`` with the given donor and orientation indices."""
        z_d = self.codes["z_d"][donor, orient]
        coarse_mask_logits = self.codes["coarse_mask_logits"][donor, orient]
        s_d = self.codes["s_d"][donor, orient]
        class_id = self.codes["class_id"][donor]
        grade_id = self.gan.grade_ids(self.grade, len(canvas), torch.device("cpu"))
        pixels = self.donor_pixels(donor, orient) if self.gan.needs_donor_pixels else ()
        if self.openvino is not None:
            image, mask = self.openvino(canvas.float().cpu(), z_d, coarse_mask_logits, s_d, class_id, grade_id, *pixels)
            return self._scaled_change(image.to(canvas), canvas, pixels), mask.to(canvas)
        from anomalib_defectgan.models.defect_gan.torch_model import DefectCodes

        device = self.device or canvas.device
        self.gan.to(device)
        param = next(self.gan.parameters())
        codes = DefectCodes(z_d.to(device), coarse_mask_logits.to(device), s_d.to(device),
                            torch.zeros(len(class_id), 0, device=device), class_id.to(device))
        pixel_args = dict(zip(("donor", "donor_mask"), (t.to(device=device, dtype=param.dtype) for t in pixels),
                              strict=False))
        with torch.no_grad():
            image, mask = self.gan.transfer(canvas.to(device=device, dtype=param.dtype), codes, defect_class=class_id,
                                            grade=self.grade, **pixel_args)
        return self._scaled_change(image.to(canvas), canvas, pixels), mask.to(canvas)

    def _scaled_change(self, image: Tensor, canvas: Tensor, pixels: tuple[Tensor, ...]) -> Tensor:
        """A composite-path GAN's output with its learned change scaled (``change_scale``) and bounded (``max_gain``).

        ``image`` as is for a code-path GAN, or when neither setting applies.
        """
        if not pixels or (self.change_scale == 1.0 and self.max_gain is None):
            return image
        donor, donor_mask = (t.to(canvas) for t in pixels)
        with torch.no_grad():
            composite = self.gan.net.composite(canvas, donor, (donor_mask >= 0.5).to(canvas.dtype))[0]
        change = self.change_scale * (image - composite)
        if self.max_gain is not None:
            change = change * gain_bounded_scale(composite - canvas, change, self.max_gain)[:, None, None, None]
        return composite + change

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Add a defect to each image with ``probability``.

        Args:
            images: ``[C, H, W]`` or ``[B, C, H, W]`` float in [0, 1], C = 1 or 3.

        Returns:
            ``(augmented, mask)``: same shape/dtype/device as ``images``, and ``[(B,) 1, H, W]``
            float in {0, 1}; outside the mask ``augmented`` equals ``images``. :attr:`last_info`
            holds, per image, the donor and placement used (None where no defect was added).
        """
        batch, single = as_batch(images)
        pending = [i for i in range(batch.shape[0]) if float(torch.rand(1, generator=self.rng)) < self.probability]
        augmented, masks = self._paint_images(batch, pending, None)
        return as_output(augmented, masks, single)

    def paint_donors(self, images: Tensor, donors: Sequence[int]) -> tuple[Tensor, Tensor]:
        """Paint bank donor ``donors[i]`` onto image ``i`` (orientation and window drawn as usual).

        The same painting as :meth:`forward` with ``probability`` 1, for benchmarks that compare
        generators on the same donors (``defectgan benchmark gan-quality``).
        """
        batch, single = as_batch(images)
        if len(donors) != batch.shape[0] or not all(0 <= int(d) < len(self.bank) for d in donors):
            raise ValueError(f"need one bank index in [0, {len(self.bank)}) per image, got {list(donors)}")
        augmented, masks = self._paint_images(batch, list(range(batch.shape[0])), [int(d) for d in donors])
        return as_output(augmented, masks, single)

    def paint_seeded(self, images: Tensor, seeds: Sequence[int]) -> tuple[Tensor, Tensor]:
        """:meth:`forward`, with image ``i`` drawing every random choice from a generator seeded ``seeds[i]``.

        Its probability draw, donor, orientation, window and redraws then depend on its seed only,
        not on :attr:`rng` or on the other images of the batch, which share nothing but the GAN
        calls; so an image gets the same defect in any batch (``defectgan generate``).
        """
        batch, single = as_batch(images)
        if len(seeds) != batch.shape[0]:
            raise ValueError(f"need one seed per image: {len(seeds)} seeds for {batch.shape[0]} images")
        rngs = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
        pending = [i for i, rng in enumerate(rngs) if float(torch.rand(1, generator=rng)) < self.probability]
        augmented, masks = self._paint_images(batch, pending, None, rngs)
        return as_output(augmented, masks, single)

    def _paint_images(self, batch: Tensor, pending: list[int], donors: list[int] | None,
                      rngs: list[torch.Generator] | None = None) -> tuple[Tensor, Tensor]:
        """Paint images ``pending`` of ``batch`` (donors drawn, or ``donors[i]`` for image i).

        ``rngs``: image i draws from ``rngs[i]`` (None: every image from :attr:`rng`).
        """
        size, margin = self.crop_size, self.margin
        height, width = batch.shape[-2:]
        # Windows may stick out of the image by ``margin`` (so defects also land near the edges),
        # and images smaller than a window are padded up to one; the GAN sees replicated pixels there.
        pad = (margin, margin + max(size - width, 0), margin, margin + max(size - height, 0))
        padded = F.pad(batch, pad, mode="replicate") if any(pad) else batch
        augmented = batch.clone()
        masks = torch.zeros_like(batch[:, :1])
        self.last_info = [None] * batch.shape[0]
        # A window near the edge can leave its defect outside the image, and the critic may reject a
        # transfer: such images get new draws.
        attempts = 3 + self.critic_redraws
        for attempt in range(attempts):
            if not pending:
                break
            pending = self._paint(padded, pending, augmented, masks, donors, final=attempt == attempts - 1,
                                  rngs=rngs)
        return augmented, masks

    @property
    def margin(self) -> int:
        """How far (px) a window may stick out of the image: the whole window with ``placement="defect"``."""
        return self.crop_size if self.placement == "defect" else self.edge_margin

    def _defect_extents(self) -> list[list[tuple[tuple[int, int], tuple[int, int]]]]:
        """Per donor and orientation: ``((first row, last row), (first column, last column))`` of its defect in its window."""
        extents = []
        for per_donor in self.codes["mask"]:
            extents.append([])
            for mask in per_donor:
                rows, cols = torch.nonzero(mask[0] > 0.5, as_tuple=True)
                if len(rows) == 0:  # no defect pixel in the window: place the window's centre
                    half = self.crop_size // 2
                    extents[-1].append(((half, half), (half, half)))
                else:
                    extents[-1].append(((int(rows.min()), int(rows.max())), (int(cols.min()), int(cols.max()))))
        return extents

    def _donor_masks(self, donors: Tensor, orients: Tensor) -> Tensor:
        """The grown masks ``[N, 1, c, c]`` (bool) of donors ``donors[j]`` in orientations ``orients[j]``."""
        if self._grown_masks is None:  # once: every donor in every orientation
            masks = self.codes["mask"].flatten(0, 1).float()
            if self.mask_dilation:
                masks = F.max_pool2d(masks, 2 * self.mask_dilation + 1, stride=1, padding=self.mask_dilation)
            self._grown_masks = (masks > 0.5).unflatten(0, self.codes["mask"].shape[:2])
        return self._grown_masks[donors, orients]

    def _render(self, windows: Tensor, donors: Tensor, orients: Tensor,
                strengths: Sequence[float] = ()) -> tuple[Tensor, Tensor]:
        """Paint donor ``donors[j]`` in orientation ``orients[j]`` onto window ``j`` ``[N, C, c, c]``.

        Returns:
            ``(result, keep)``: the painted windows, equal to ``windows`` outside ``keep``
            ``[N, 1, c, c]`` (bool), the pixels that changed by at least ``min_change``.
        """
        gan_windows = to_channels(windows, self.gan.channels)
        painted, soft = self._transfer(gan_windows, donors, orients)
        if self.gan.needs_donor_pixels:
            keep = soft > 0  # the region G could change (soft edge included): nothing outside it changed
        elif self.mask_source == "gan":
            keep = soft >= self.mask_threshold
        else:
            keep = self._donor_masks(donors, orients).to(soft.device)
        if self.gan.channels == windows.shape[1]:
            result = painted.clamp(0.0, 1.0)
        else:  # paint the GAN's luminance change onto the input's channels
            result = (windows + to_channels(painted - gan_windows, windows.shape[1])).clamp(0.0, 1.0)
        if strengths:
            result = windows + torch.tensor(list(strengths)).to(result)[:, None, None, None] * (result - windows)
        if self.min_change > 0:
            keep = keep & changed_mask(result, windows, self.min_change)
        return torch.where(keep, result, windows), keep

    def paint_windows(self, windows: Tensor, donors: Sequence[int]) -> tuple[Tensor, Tensor]:
        """Paint bank donor ``donors[j]`` as it lies (no flip) onto window ``j``, centred as in the bank's windows.

        No placement is drawn: window ``j`` ``[N, C, c, c]`` (``c`` = :attr:`crop_size`) must be the
        target cut where the donor's defect should land, as
        :meth:`~anomalib_defectgan.generators.defect_bank.DefectBank.window` cuts the donor. For
        measuring a painting against the same defect rendered on the target
        (``defectgan benchmark transfer-fidelity``).

        Returns:
            ``(painted, mask)``: ``[N, C, c, c]``, and ``[N, 1, c, c]`` float in {0, 1}, the pixels that changed.
        """
        if windows.dim() != 4 or tuple(windows.shape[-2:]) != (self.crop_size, self.crop_size):
            raise ValueError(f"windows must be [N, C, {self.crop_size}, {self.crop_size}], got {tuple(windows.shape)}")
        if len(donors) != windows.shape[0] or not all(0 <= int(d) < len(self.bank) for d in donors):
            raise ValueError(f"need one bank index in [0, {len(self.bank)}) per window, got {list(donors)}")
        unflipped = next(i for i, o in enumerate(self.orientations) if not (o.flip_h or o.flip_v or o.rot90))
        result, keep = self._render(windows, torch.tensor([int(d) for d in donors]),
                                    torch.full((len(donors),), unflipped, dtype=torch.long))
        return result, keep.to(windows.dtype)

    def _paint(self, padded: Tensor, indices: list[int], augmented: Tensor, masks: Tensor,
               donors: list[int] | None = None, final: bool = True,
               rngs: list[torch.Generator] | None = None) -> list[int]:
        """Draw donor, orientation and window for images ``indices`` (from ``rngs[i]`` if given), paint them in place.

        Returns:
            The indices whose defect fell outside the image, or (unless ``final``) that the critic
            did not recognise: nothing painted.
        """
        size, margin = self.crop_size, self.margin
        height, width = augmented.shape[-2:]
        chosen = []  # image, donor, orientation, top, left (in padded coordinates)
        strengths: list[float] = []
        for i in indices:
            rng = self.rng if rngs is None else rngs[i]
            donor = self.sampler.sample(rng) if donors is None else donors[i]
            orient = int(torch.randint(len(self.orientations), (1,), generator=rng))
            if self.placement == "defect":
                (first_row, last_row), (first_col, last_col) = self._extents[donor][orient]
                top = margin + uniform_int(-first_row, height - 1 - last_row, rng)
                left = margin + uniform_int(-first_col, width - 1 - last_col, rng)
            else:
                top = int(torch.randint(padded.shape[-2] - size + 1, (1,), generator=rng))
                left = int(torch.randint(padded.shape[-1] - size + 1, (1,), generator=rng))
            if self.min_strength < 1.0:
                strengths.append(1.0 - (1.0 - self.min_strength) * float(torch.rand(1, generator=rng)))
            chosen.append((i, donor, orient, top, left))
        windows = torch.stack([padded[i, :, top:top + size, left:left + size] for i, _, _, top, left in chosen])
        result, keep = self._render(windows, torch.tensor([c[1] for c in chosen]), torch.tensor([c[2] for c in chosen]),
                                    strengths)
        regions = [overlap(Placement(top - margin, left - margin), (size, size), (height, width))
                   for _, _, _, top, left in chosen]
        inside = torch.zeros_like(keep)
        for j, (_, (wy, wx)) in enumerate(regions):
            inside[j, :, wy, wx] = True
        hit = [bool(h) for h in (keep & inside).flatten(1).any(1)]
        recognised = [True] * len(chosen)
        if self.critic_redraws:
            class_ids = self.codes["class_id"][torch.tensor([c[1] for c in chosen])]
            recognised = self.gan.recognised(to_channels(result, self.gan.channels), class_ids).tolist()
            if not final:
                hit = [h and r for h, r in zip(hit, recognised, strict=True)]
        missed = []
        for j, (i, donor, orient, top, left) in enumerate(chosen):
            if not hit[j]:
                missed.append(i)
                continue
            (iy, ix), (wy, wx) = regions[j]
            augmented[i, :, iy, ix] = result[j, :, wy, wx]
            masks[i, :, iy, ix] = keep[j, :, wy, wx].to(masks.dtype)
            source, o = self.bank.donors[donor], self.orientations[orient]
            self.last_info[i] = {"donor_path": source.path, "donor_mask_path": source.mask_path,
                                 "defect_class": source.defect_class, "top": top - margin, "left": left - margin,
                                 "flip_h": o.flip_h, "flip_v": o.flip_v, "rot90": o.rot90, "window": size,
                                 "critic_recognised": bool(recognised[j])}
            if strengths:
                self.last_info[i]["strength"] = strengths[j]
        return missed
