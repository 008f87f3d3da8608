"""Standalone generator: ``generator.safetensors`` + ``generator.json``, loaded without pickle.

``load_generator(path)`` returns a :class:`DefectGanGenerator` (eval mode, EMA weights) with::

    codes = gen.encode(donors)                      # DefectCodes(z_d, coarse_mask_logits, s_d, z_t, defect_class)
    image, mask = gen.transfer(canvas, codes)       # paint the donors' defects onto canvases
    image, mask = gen.transfer(canvas, codes, donor=donors, donor_mask=masks)  # defect_path="composite"
    image, mask = gen.restore(defective)            # paint defects away

Images are float ``[B, C, H, W]`` in [0, 1] with H and W multiples of 8; a transfer canvas must
have the size of the donor crops its codes came from (``8 * z_d`` grid). Masks are soft
``[B, 1, H, W]`` in [0, 1]; outside the mask the canvas is copied (``X = m * f + (1 - m) * canvas``).
:meth:`DefectGanGenerator.export_module` gives a module that `torch.export` captures for OpenVINO.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from anomalib_defectgan.errors import DefectGanError
from anomalib_defectgan.models.defect_gan.critic import VersatileClassifier
from anomalib_defectgan.models.defect_gan.torch_model import DefectCodes, DefectGanNet
from anomalib_defectgan.utils.atomic import atomic_path, atomic_write_text

KIND = "defectgan-generator"
FORMAT_VERSION = 1
WEIGHTS_NAME = "generator.safetensors"
CONFIG_NAME = "generator.json"
CRITIC_NAME = "critic.safetensors"

ClassSpec = int | str | Sequence[int | str] | Tensor | None


def _save_tensors(module: nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    tensors = {name: value.detach().float().cpu().contiguous() for name, value in module.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"kind": KIND, "format_version": str(FORMAT_VERSION)})


def save_generator(net: DefectGanNet, config: dict[str, Any], classes: list[str], grades: list[str],
                   crop_size: int, out_dir: str | Path, critic: VersatileClassifier | None = None,
                   critic_width: int | None = None) -> Path:
    """Write ``out_dir/generator.safetensors`` and ``out_dir/generator.json`` atomically.

    Args:
        net: Encoder + generator (EMA weights).
        config: Init arguments of ``net``.
        classes: Class vocabulary, ``'good'`` first.
        grades: Training grades.
        crop_size: Training crop size.
        out_dir: Output folder.
        critic: The frozen versatile classifier V, written as ``critic.safetensors`` (it lets
            ``DefectTransferGenerator(critic_redraws=N)`` reject transfers V does not recognise).
        critic_width: V's width (with ``critic``).

    Returns:
        Path of the ``.safetensors`` file.
    """
    out_dir = Path(out_dir)
    weights = out_dir / WEIGHTS_NAME
    _save_tensors(net, weights)
    meta = {"kind": KIND, "format_version": FORMAT_VERSION, "config": config, "classes": list(classes),
            "grades": list(grades), "channels": int(config["channels"]), "crop_size": int(crop_size)}
    if critic is not None:
        _save_tensors(critic, out_dir / CRITIC_NAME)
        meta["critic"] = {"file": CRITIC_NAME, "width": int(critic_width or 16)}
    atomic_write_text(out_dir / CONFIG_NAME, json.dumps(meta, indent=2) + "\n")
    return weights


def _paths(path: str | Path) -> tuple[Path, Path]:
    path = Path(path)
    if path.is_dir():
        return path / WEIGHTS_NAME, path / CONFIG_NAME
    if path.suffix == ".json":
        return path.with_suffix(".safetensors"), path
    return path, path.with_suffix(".json")


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> DefectGanGenerator:
    """Load a generator written by ``defectgan fit`` / ``defectgan export-weights``.

    Args:
        path: The folder holding ``generator.safetensors`` + ``generator.json``, or either file.
        device: Where to put the module.

    Raises:
        DefectGanError: Missing or unreadable files, a JSON of another kind or format version,
            a value outside the schema (:mod:`.generator_schema`, naming the key), or weights that
            do not fit the recorded config.
    """
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    from anomalib_defectgan.models.defect_gan.generator_schema import check_config, check_weights_fit

    weights, config_path = _paths(path)
    for file in (weights, config_path):
        if not file.is_file():
            raise DefectGanError(f"{file}: not found (a generator is {WEIGHTS_NAME} + {CONFIG_NAME}, written by "
                                 "'defectgan fit' or 'defectgan export-weights')")
    try:
        meta = json.loads(config_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DefectGanError(f"{config_path}: not a readable JSON file ({err})") from err
    if not isinstance(meta, dict) or meta.get("kind") != KIND:
        kind = meta.get("kind") if isinstance(meta, dict) else type(meta).__name__
        raise DefectGanError(f"{config_path}: kind is {kind!r}, expected {KIND!r} (not a DefectGan generator)")
    if meta.get("format_version") != FORMAT_VERSION:
        raise DefectGanError(f"{config_path}: format_version {meta.get('format_version')!r} is not supported "
                             f"(this version reads {FORMAT_VERSION})")
    config = check_config(meta, config_path)
    try:
        with safe_open(str(weights), framework="pt") as stored:
            shapes = {name: tuple(stored.get_slice(name).get_shape()) for name in stored.keys()}  # noqa: SIM118  (safe_open is no dict)
    except (SafetensorError, OSError) as err:
        raise DefectGanError(f"{weights}: not a readable safetensors file ({err})") from err
    check_weights_fit(config, shapes, config_path, weights)
    try:
        net = DefectGanNet(**config)
        state = load_file(str(weights))
        net.load_state_dict(state)
    except (KeyError, TypeError, ValueError) as err:
        raise DefectGanError(f"{config_path}: config does not describe a DefectGan generator ({err})") from err
    except (SafetensorError, OSError) as err:
        raise DefectGanError(f"{weights}: not a readable safetensors file ({err})") from err
    except RuntimeError as err:
        raise DefectGanError(f"{weights}: weights do not match {config_path.name} ({str(err).splitlines()[0]})") from err
    critic = _load_critic(weights.parent, meta) if isinstance(meta.get("critic"), dict) else None
    return DefectGanGenerator(net, meta["classes"], meta["grades"], meta["crop_size"], critic).to(device).eval()


def _load_critic(folder: Path, meta: dict[str, Any]) -> VersatileClassifier:
    """The versatile classifier V saved beside the generator."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = folder / str(meta["critic"].get("file", CRITIC_NAME))
    try:
        critic = VersatileClassifier(int(meta["config"]["channels"]), len(meta["classes"]), len(meta["grades"]),
                                     int(meta["critic"]["width"]))
        critic.load_state_dict(load_file(str(path)))
    except (KeyError, TypeError, ValueError) as err:
        raise DefectGanError(f"{folder / CONFIG_NAME}: critic entry does not describe the critic ({err})") from err
    except (SafetensorError, OSError) as err:
        raise DefectGanError(f"{path}: not a readable safetensors file ({err})") from err
    except RuntimeError as err:
        raise DefectGanError(f"{path}: critic weights do not match {CONFIG_NAME} ({str(err).splitlines()[0]})") from err
    return critic.requires_grad_(False)


class TransferGraph(nn.Module):
    """Exportable (``torch.export``) transfer: ``(canvas, z_d, coarse_mask_logits, s_d, class_id, grade_id[,
    donor, donor_mask]) -> (image, mask)``.

    The last two inputs exist for ``defect_path="composite"`` generators only (:attr:`input_names`).
    """

    def __init__(self, net: DefectGanNet) -> None:
        super().__init__()
        self.net = net

    @property
    def input_names(self) -> list[str]:
        """Names of the graph's inputs, in order."""
        names = ["canvas", "z_d", "coarse_mask_logits", "s_d", "class_id", "grade_id"]
        return [*names, "donor", "donor_mask"] if self.net.composite_path else names

    def forward(self, canvas: Tensor, z_d: Tensor, coarse_mask_logits: Tensor, s_d: Tensor, class_id: Tensor,
                grade_id: Tensor, donor: Tensor | None = None, donor_mask: Tensor | None = None
                ) -> tuple[Tensor, Tensor]:
        """Paint the defect code onto ``canvas``; ``class_id``/``grade_id`` are ``[B]`` long."""
        out = self.net.transfer(canvas, z_d, coarse_mask_logits, s_d, class_id, grade_id, donor, donor_mask)
        return out.image, out.mask


class DefectGanGenerator(nn.Module):
    """Inference wrapper of the EMA encoder + generator with its vocabularies.

    Args:
        net: The network (EMA weights).
        classes: Class vocabulary, ``'good'`` first.
        grades: Training grades; other grade names map to the 'unknown grade' embedding.
        crop_size: Crop size the network was trained on.
        critic: The frozen versatile classifier V trained with the GAN, if it was saved.
    """

    def __init__(self, net: DefectGanNet, classes: list[str], grades: list[str], crop_size: int,
                 critic: VersatileClassifier | None = None) -> None:
        super().__init__()
        self.net = net
        self.critic = critic
        self.classes = list(classes)
        self.grades = list(grades)
        self.crop_size = int(crop_size)
        self.channels = net.channels

    def class_ids(self, defect_class: ClassSpec, batch: int, device: torch.device) -> Tensor | None:
        """Class ids ``[batch]`` from names or ids (one, or one per image); None stays None."""
        if defect_class is None:
            return None
        if isinstance(defect_class, Tensor):
            ids = defect_class.to(device=device, dtype=torch.long).reshape(-1)
        else:
            items = [defect_class] if isinstance(defect_class, int | str) else list(defect_class)
            ids_list = []
            for item in items:
                if isinstance(item, str):
                    if item not in self.classes:
                        raise DefectGanError(f"unknown defect class {item!r}; this generator knows {self.classes}")
                    ids_list.append(self.classes.index(item))
                else:
                    ids_list.append(int(item))
            ids = torch.tensor(ids_list, dtype=torch.long, device=device)
        if ids.numel() == 1:
            ids = ids.expand(batch)
        if ids.numel() != batch:
            raise DefectGanError(f"got {ids.numel()} defect classes for {batch} images")
        if bool(((ids < 0) | (ids >= len(self.classes))).any()):
            raise DefectGanError(f"defect class ids {ids.tolist()} out of range 0..{len(self.classes) - 1}")
        return ids

    def grade_ids(self, grade: int | str | Sequence[int | str] | None, batch: int, device: torch.device) -> Tensor:
        """Grade ids ``[batch]``; None or a grade not seen in training means 'unknown grade'."""
        unknown = self.net.unknown_grade
        if grade is None:
            return torch.full((batch,), unknown, dtype=torch.long, device=device)
        items = [grade] if isinstance(grade, int | str) else list(grade)
        ids = [self.grades.index(g) if isinstance(g, str) and g in self.grades else
               (int(g) if isinstance(g, int) and 0 <= g <= unknown else unknown) for g in items]
        tensor = torch.tensor(ids, dtype=torch.long, device=device)
        return tensor.expand(batch) if tensor.numel() == 1 else tensor

    def _check(self, images: Tensor, what: str) -> Tensor:
        if images.dim() == 3:
            images = images[None]
        if images.dim() != 4 or images.shape[1] != self.channels:
            raise DefectGanError(f"{what}: expected [B, {self.channels}, H, W] images, got {list(images.shape)}")
        stride = self.net.code_stride
        if images.shape[-1] % stride or images.shape[-2] % stride:
            raise DefectGanError(f"{what}: height and width must be multiples of the GAN's code stride {stride}, "
                                 f"got {list(images.shape[-2:])}")
        param = next(self.net.parameters())
        return images.to(device=param.device, dtype=param.dtype)

    @torch.no_grad()
    def encode(self, images: Tensor, defect_class: ClassSpec = None) -> DefectCodes:
        """Codes of donor images; the class is the encoder's guess when not given."""
        images = self._check(images, "encode")
        enc = self.net.encode(images)
        ids = self.class_ids(defect_class, len(images), images.device)
        if ids is None:
            ids = enc.class_logits.argmax(dim=1)
        return enc.codes(ids)

    @property
    def needs_donor_pixels(self) -> bool:
        """True for ``defect_path="composite"``: :meth:`transfer` needs the donor crops and masks."""
        return self.net.composite_path

    @torch.no_grad()
    def transfer(self, canvas: Tensor, codes: DefectCodes, defect_class: ClassSpec = None,
                 grade: int | str | Sequence[int | str] | None = None, donor: Tensor | None = None,
                 donor_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Paint ``codes`` onto ``canvas``: returns ``(image [B,C,H,W], mask [B,1,H,W])``.

        Args:
            canvas: Target images, the size of the donor crops (``net.code_stride`` x the code grid).
            codes: From :meth:`encode` (batch 1 is broadcast over the canvases).
            defect_class: Class names or ids (one or one per image); the codes' class when None.
            grade: The canvases' grade, if it is a training grade; 'unknown grade' otherwise.
            donor: The donor crops the codes came from, aligned with the canvases (required when
                :attr:`needs_donor_pixels`; batch 1 is broadcast).
            donor_mask: ``[B, 1, H, W]`` the donors' defect pixels in {0, 1} (with ``donor``).

        Returns:
            The image and the soft mask of the code path, or the region G could change (the
            pasted defect, grown) of the composite path.
        """
        canvas = self._check(canvas, "transfer")
        batch = len(canvas)
        stride = self.net.code_stride
        if tuple(codes.z_d.shape[-2:]) != (canvas.shape[-2] // stride, canvas.shape[-1] // stride):
            raise DefectGanError(f"transfer: canvas {list(canvas.shape[-2:])} does not match the codes' crop size "
                                 f"{[stride * s for s in codes.z_d.shape[-2:]]}")
        if len(codes.z_d) not in (1, batch):
            raise DefectGanError(f"transfer: {len(codes.z_d)} codes for {batch} canvases")
        ids = self.class_ids(defect_class, batch, canvas.device)
        ids = codes.defect_class.expand(batch) if ids is None else ids
        s_d = codes.s_d.expand(batch, -1) * (ids > 0).to(canvas.dtype)[:, None]
        if self.needs_donor_pixels:
            if donor is None or donor_mask is None:
                raise DefectGanError("transfer: this generator (defect_path 'composite') needs donor= and "
                                     "donor_mask=, the donor crops its codes came from")
            donor = self._check(donor, "transfer donor").expand(batch, -1, -1, -1)
            if donor.shape != canvas.shape:
                raise DefectGanError(f"transfer: donor crops {list(donor.shape[1:])} do not match the canvases "
                                     f"{list(canvas.shape[1:])}")
            if donor_mask.dim() == 3:
                donor_mask = donor_mask[None]
            if donor_mask.shape[1:] != (1, *canvas.shape[-2:]):
                raise DefectGanError(f"transfer: donor_mask must be [B, 1, {canvas.shape[-2]}, {canvas.shape[-1]}], "
                                     f"got {list(donor_mask.shape)}")
            donor_mask = (donor_mask.to(canvas) >= 0.5).to(canvas.dtype).expand(batch, -1, -1, -1)
            if not bool(donor_mask.flatten(1).any(1).all()):
                raise DefectGanError("transfer: a donor_mask is empty: there is no defect to transfer")
        out = self.net.transfer(canvas, codes.z_d.expand(batch, -1, -1, -1),
                                codes.coarse_mask_logits.expand(batch, -1, -1, -1), s_d,
                                ids, self.grade_ids(grade, batch, canvas.device), donor, donor_mask)
        return out.image, out.mask

    @torch.no_grad()
    def restore(self, images: Tensor, grade: int | str | Sequence[int | str] | None = None) -> tuple[Tensor, Tensor]:
        """Paint the defects of ``images`` away: returns ``(image, soft mask of what changed)``."""
        images = self._check(images, "restore")
        enc = self.net.encode(images)
        zeros = torch.zeros(len(images), dtype=torch.long, device=images.device)
        out = self.net.decode(images, enc, enc.z_d, enc.coarse_mask_logits, enc.style(zeros), zeros,
                              self.grade_ids(grade, len(images), images.device))
        return out.image, out.mask

    @torch.no_grad()
    def recognised(self, images: Tensor, defect_class: Tensor) -> Tensor:
        """``[B]`` bool: the critic V reads each crop as its ``defect_class`` (all True without V)."""
        if self.critic is None:
            return torch.ones(len(images), dtype=torch.bool, device=images.device)
        images = self._check(images, "critic")
        return self.critic(images).class_logits.argmax(dim=1) == defect_class.to(images.device)

    def export_module(self) -> TransferGraph:
        """The transfer graph for ``torch.export`` and ``openvino.convert_model``."""
        return TransferGraph(self.net).eval()
