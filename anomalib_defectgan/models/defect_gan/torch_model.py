"""The layered swapping autoencoder: encoder E and generator G (docs/design.md, "The codes").

``E(x)`` gives a spatial defect code ``z_d`` at ``H/s`` (``s = code_stride``, 8 by default) gated by
``coarse_mask_logits``, a per-class defect-style vector ``s_d`` pooled over the defect (zero for
good), a texture code ``z_t`` pooled outside the defect, and skip features of ``x``. ``G`` decodes
over the canvas' own encoder features, modulated by ``w = MLP(s_d, z_t(canvas), embed(class),
embed(grade))``, and outputs a foreground ``f`` and a full-resolution mask ``m`` whose logits are
refined from ``coarse_mask_logits`` at every scale; the result is ``X = m * f + (1 - m) * canvas``.

With ``defect_path="composite"`` the donor's defect also reaches G at full resolution: a transfer
first pastes the donor's real defect pixels onto the canvas
(:func:`~anomalib_defectgan.data.blending.paste_feathered`), and G decodes over that composite's
features with ``m`` fixed to the pasted region. G starts as the identity of the composite (the
foreground is a residual on the composite's logits, with zero-initialised output layers), so it
learns only what to change: how the defect sits in the new material. Restoring (painting a defect
away) keeps the learned mask.

Images are float ``[B, C, H, W]`` in [0, 1] with H and W multiples of 8.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from anomalib_defectgan.data.blending import COMPOSITE_MODES, dilate, feather_alpha
from anomalib_defectgan.data.blending import composite as put_defect
from anomalib_defectgan.models.defect_gan.layers import (
    EqualConv2d,
    EqualLinear,
    ModulatedConv2d,
    channel_plan,
)

LEVELS = 4  # default resolutions H, H/2, H/4, H/8: the defect code lives at the last one
DEFECT_PATHS = ("code", "composite")
#: Which pixels a composite-path G may change, before ``region_dilation``: ``"halo"``, the pasted
#: blend weight ``alpha > 0`` (the defect and its feathered edge); ``"defect"``, the donor's defect pixels.
CHANGE_REGIONS = ("halo", "defect")


@dataclass
class DefectCodes:
    """What the encoder says about a batch of images.

    Attributes:
        z_d: Spatial defect code ``[B, zd, H/s, W/s]`` (``s`` = :attr:`DefectGanNet.code_stride`), gated by the coarse mask (near zero off-defect).
        coarse_mask_logits: Coarse mask logits ``[B, 1, H/s, W/s]``.
        s_d: Defect-style vector ``[B, sd]`` of each image's class head; zero for good.
        z_t: L2-normalised texture code ``[B, zt]`` pooled outside the defect.
        defect_class: ``[B]`` long class ids the codes were made for (0 = good).
    """

    z_d: Tensor
    coarse_mask_logits: Tensor
    s_d: Tensor
    z_t: Tensor
    defect_class: Tensor

    def index(self, rows: Tensor | slice | list[int]) -> DefectCodes:
        """Select rows of every tensor (e.g. to pick donors from a bank)."""
        return DefectCodes(self.z_d[rows], self.coarse_mask_logits[rows], self.s_d[rows], self.z_t[rows], self.defect_class[rows])


@dataclass
class EncoderOutput:
    """Full encoder output (training needs more than :class:`DefectCodes`)."""

    features: list[Tensor]
    z_d: Tensor
    coarse_mask_logits: Tensor
    style_all: Tensor
    z_t: Tensor
    class_logits: Tensor
    pooled_defect: Tensor

    def style(self, defect_class: Tensor) -> Tensor:
        """Defect-style vector of each row's class head; zero for class 0 (good)."""
        return select_style(self.style_all, defect_class)

    def codes(self, defect_class: Tensor) -> DefectCodes:
        """The :class:`DefectCodes` for the given class ids."""
        return DefectCodes(self.z_d, self.coarse_mask_logits, self.style(defect_class), self.z_t, defect_class)


@dataclass
class GeneratorOutput:
    """Generator output: composite image, soft mask, foreground and mask logits (all full size)."""

    image: Tensor
    mask: Tensor
    foreground: Tensor
    mask_logits: Tensor


def select_style(style_all: Tensor, defect_class: Tensor) -> Tensor:
    """Pick head ``k - 1`` of ``style_all`` ``[B, K-1, sd]`` per row; rows of class 0 get zeros.

    Written as a one-hot contraction (no indexing on values) so it traces for export.
    """
    num_defect = style_all.shape[1]
    one_hot = F.one_hot(defect_class.long(), num_defect + 1)[:, 1:].to(style_all.dtype)
    return torch.einsum("bk,bkd->bd", one_hot, style_all)


def _masked_mean(features: Tensor, weight: Tensor) -> Tensor:
    """Mean of ``features`` ``[B, C, h, w]`` over space weighted by ``weight`` ``[B, 1, h, w]``."""
    total = weight.sum(dim=(2, 3)).clamp_min(1e-3)
    return (features * weight).sum(dim=(2, 3)) / total


class Encoder(nn.Module):
    """E(x): skip features, defect code, coarse mask logits, per-class style and texture code.

    Args:
        channels: Image channels (1 or 3).
        num_classes: Classes including good (index 0).
        widths: Channels per resolution level, H first (one level per entry; the codes live at
            the last, ``H / 2**(len(widths) - 1)``).
        zd_channels: Channels of the spatial defect code.
        sd_dim: Size of the defect-style vector.
        zt_dim: Size of the texture code.
        mask_bias: Initial bias of the coarse mask logits (negative: masks start small).
    """

    def __init__(self, channels: int, num_classes: int, widths: list[int], zd_channels: int, sd_dim: int,
                 zt_dim: int, mask_bias: float = -1.0) -> None:
        super().__init__()
        self.stem = EqualConv2d(channels, widths[0], 3, activation=True)
        self.down = nn.ModuleList(
            nn.Sequential(EqualConv2d(widths[i - 1], widths[i], 3, stride=2, activation=True),
                          EqualConv2d(widths[i], widths[i], 3, activation=True))
            for i in range(1, len(widths)))
        top = widths[-1]
        self.trunk = EqualConv2d(top, top, 3, activation=True)
        self.defect_code = EqualConv2d(top, zd_channels, 1)
        self.mask_head = EqualConv2d(top, 1, 1)
        nn.init.constant_(self.mask_head.bias, mask_bias)
        self.style_heads = EqualLinear(top, (num_classes - 1) * sd_dim)
        self.texture_head = nn.Sequential(EqualLinear(top, top, activation=True), EqualLinear(top, zt_dim))
        self.class_head = EqualLinear(2 * top, num_classes)
        self.sd_dim = sd_dim
        self.num_classes = num_classes

    def forward(self, image: Tensor) -> EncoderOutput:
        """Encode ``image`` ``[B, C, H, W]`` in [0, 1]."""
        x = self.stem(image * 2.0 - 1.0)
        features = [x]
        for block in self.down:
            x = block(x)
            features.append(x)
        top = self.trunk(x)
        coarse_mask_logits = self.mask_head(top)
        gate = torch.sigmoid(coarse_mask_logits)
        z_d = self.defect_code(top) * gate
        pooled_defect = _masked_mean(top, gate)
        style_all = self.style_heads(pooled_defect).view(-1, self.num_classes - 1, self.sd_dim)
        z_t = F.normalize(self.texture_head(_masked_mean(top, 1.0 - gate)), dim=1)
        class_logits = self.class_head(torch.cat([pooled_defect, top.mean(dim=(2, 3))], dim=1))
        return EncoderOutput(features, z_d, coarse_mask_logits, style_all, z_t, class_logits, pooled_defect)


class Generator(nn.Module):
    """G(canvas features, z_d, coarse_mask_logits, s_d, class, grade) -> composite, mask, foreground.

    Args:
        channels: Image channels.
        num_classes: Classes including good.
        num_grades: Known grades; one more embedding row stands for an unknown (new) grade.
        widths: Channels per resolution level, H first (decoder mirrors the encoder).
        zd_channels: Channels of the spatial defect code.
        sd_dim: Defect-style size.
        zt_dim: Texture-code size.
        w_dim: Style size after the mapping MLP.
        embed_dim: Size of the class and grade embeddings.
        mapping_layers: Layers of the mapping MLP.
        canvas_skip: Add the canvas (as a logit) to the foreground logits, so the foreground starts
            as the canvas and the generator learns only what to change.
    """

    def __init__(self, channels: int, num_classes: int, num_grades: int, widths: list[int], zd_channels: int,
                 sd_dim: int, zt_dim: int, w_dim: int, embed_dim: int, mapping_layers: int,
                 canvas_skip: bool = False) -> None:
        super().__init__()
        self.canvas_skip = canvas_skip
        self.class_embed = nn.Embedding(num_classes, embed_dim)
        self.grade_embed = nn.Embedding(num_grades + 1, embed_dim)
        layers: list[nn.Module] = []
        size = sd_dim + zt_dim + 2 * embed_dim
        for _ in range(mapping_layers):
            layers.append(EqualLinear(size, w_dim, lr_mul=0.1, activation=True))
            size = w_dim
        self.mapping = nn.Sequential(*layers)
        top = widths[-1]
        self.entry = EqualConv2d(top + zd_channels + 1, top, 3, activation=True)
        self.blocks = nn.ModuleList()
        self.to_rgb = nn.ModuleList()
        self.to_mask = nn.ModuleList()
        previous = top
        self.levels = len(widths)
        for level in reversed(range(self.levels)):
            width = widths[level]
            in_ch = previous if level == self.levels - 1 else previous + widths[level]
            self.blocks.append(nn.ModuleList([ModulatedConv2d(in_ch, width, 3, w_dim),
                                              ModulatedConv2d(width, width, 3, w_dim)]))
            self.to_rgb.append(ModulatedConv2d(width, channels, 1, w_dim, demodulate=False, activation=False))
            self.to_mask.append(ModulatedConv2d(width, 1, 1, w_dim, demodulate=False, activation=False))
            previous = width

    def style(self, s_d: Tensor, z_t: Tensor, defect_class: Tensor, grade: Tensor) -> Tensor:
        """Map the style inputs to ``w``."""
        inputs = torch.cat([s_d, z_t, self.class_embed(defect_class), self.grade_embed(grade)], dim=1)
        return self.mapping(inputs)

    def forward(self, canvas: Tensor, features: list[Tensor], z_d: Tensor, coarse_mask_logits: Tensor, w: Tensor,
                region: Tensor | None = None) -> GeneratorOutput:
        """Decode over the canvas' encoder ``features`` and composite onto ``canvas``.

        ``region`` ``[B, 1, H, W]``, when given, replaces the learned mask: G may change only there.
        """
        x = self.entry(torch.cat([features[-1], z_d, coarse_mask_logits], dim=1))
        rgb: Tensor | None = None
        logits = coarse_mask_logits
        for step, (block, to_rgb, to_mask) in enumerate(zip(self.blocks, self.to_rgb, self.to_mask, strict=True)):
            if step > 0:
                x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
                x = torch.cat([x, features[self.levels - 1 - step]], dim=1)
                logits = F.interpolate(logits, scale_factor=2.0, mode="bilinear", align_corners=False)
                rgb = F.interpolate(rgb, scale_factor=2.0, mode="bilinear", align_corners=False)
            x = block[1](block[0](x, w), w)
            logits = logits + to_mask(x, w)
            rgb = to_rgb(x, w) if rgb is None else rgb + to_rgb(x, w)
        if self.canvas_skip:
            rgb = rgb + torch.logit(canvas.clamp(1e-3, 1.0 - 1e-3))
        foreground = torch.sigmoid(rgb)
        mask = torch.sigmoid(logits) if region is None else region
        image = mask * foreground + (1.0 - mask) * canvas
        return GeneratorOutput(image, mask, foreground, logits)


class DefectGanNet(nn.Module):
    """Encoder + generator: the part of the GAN that is kept (and EMA-averaged) for inference.

    Args:
        channels: Image channels (1 or 3).
        num_classes: Classes including good (index 0).
        num_grades: Known grades (the generator adds one 'unknown grade' embedding).
        base_channels: Channels at full resolution; doubled at each halving.
        max_channels: Cap on channels.
        zd_channels: Channels of the spatial defect code ``z_d``.
        sd_dim: Size of the defect-style vector ``s_d``.
        zt_dim: Size of the texture code ``z_t``.
        w_dim: Size of the modulation style ``w``.
        embed_dim: Size of class/grade embeddings.
        mapping_layers: Layers of the mapping MLP.
        mask_bias: Initial coarse mask logit (negative: masks start small).
        canvas_skip: Foreground starts as the canvas (see :class:`Generator`).
        code_levels: Resolution levels; the spatial defect code lives at ``H / 2**(code_levels - 1)``
            (4: stride 8; 3: stride 4, finer defect geometry).
        defect_path: ``"code"``: the defect reaches G only through its codes; ``"composite"``: also
            as the donor's real pixels pasted onto the canvas (see the module doc; implies
            ``canvas_skip`` and starts G as the identity of the composite).
        composite_feather: Gaussian sigma (px) of the pasted defect's edge (``"composite"``).
        region_dilation: Pixels the pasted region G may change is grown by beyond the feathered
            edge (``"composite"``).
        region_feather: Gaussian sigma (px) of the region's own soft edge (``"composite"``): G's
            change fades to zero over about ``2 * region_feather`` px outside the grown region
            instead of stopping at a hard edge (0: a binary region).
        composite_mode: How the donor's defect is put on the canvas (``"composite"``): ``"paste"``,
            its pixels, brightness-matched (:func:`~anomalib_defectgan.data.blending.paste_feathered`);
            ``"residual"``, the canvas plus the defect's change against the donor's background
            filled in from around the defect
            (:func:`~anomalib_defectgan.data.blending.paste_change`): no donor background is pasted;
            ``"adaptive"``, that change with the canvas' fine texture taken out where the donor's
            defect brings its own (``replace_texture``); ``"matched"``, the adaptive change fitted
            to the canvas' material first (:func:`~anomalib_defectgan.data.blending.match_change`:
            darkening scaled by the grey-level ratio, the donor's grain left out).
        change_region: Where G may change the composite (``"composite"``), before ``region_dilation``:
            ``"halo"``, the pasted blend weight ``alpha > 0`` (the defect and its feathered edge,
            about ``2 * composite_feather`` px around it); ``"defect"``, the donor's defect pixels
            only, so G cannot lay a plate around a thin defect (the composite's own feathered
            edge still blends it).
    """

    def __init__(self, channels: int = 1, num_classes: int = 2, num_grades: int = 1, base_channels: int = 16,
                 max_channels: int = 64, zd_channels: int = 8, sd_dim: int = 16, zt_dim: int = 64,
                 w_dim: int = 64, embed_dim: int = 16, mapping_layers: int = 2, mask_bias: float = -1.0,
                 canvas_skip: bool = False, code_levels: int = LEVELS, defect_path: str = "code",
                 composite_feather: float = 2.0, region_dilation: int = 1, region_feather: float = 0.0,
                 composite_mode: str = "paste", change_region: str = "halo") -> None:
        super().__init__()
        if defect_path not in DEFECT_PATHS:
            raise ValueError(f"defect_path must be one of {DEFECT_PATHS}, got {defect_path!r}")
        if composite_mode not in COMPOSITE_MODES:
            raise ValueError(f"composite_mode must be one of {COMPOSITE_MODES}, got {composite_mode!r}")
        if change_region not in CHANGE_REGIONS:
            raise ValueError(f"change_region must be one of {CHANGE_REGIONS}, got {change_region!r}")
        if num_classes < 2:
            raise ValueError(f"need 'good' and at least one defect class, got num_classes={num_classes}")
        if code_levels not in (2, 3, 4, 5):
            raise ValueError(f"code_levels must be 2 to 5, got {code_levels}")
        widths = channel_plan(base_channels, max_channels, code_levels)
        self.encoder = Encoder(channels, num_classes, widths, zd_channels, sd_dim, zt_dim, mask_bias)
        self.composite_path = defect_path == "composite"
        self.generator = Generator(channels, num_classes, num_grades, widths, zd_channels, sd_dim, zt_dim, w_dim,
                                   embed_dim, mapping_layers, canvas_skip or self.composite_path)
        if self.composite_path:  # G starts as the identity: foreground = composite
            for layer in self.generator.to_rgb:
                nn.init.zeros_(layer.weight)
        self.composite_feather = float(composite_feather)
        self.region_dilation = int(region_dilation)
        if region_feather < 0:
            raise ValueError(f"region_feather must be >= 0, got {region_feather}")
        self.region_feather = float(region_feather)
        self.composite_mode = composite_mode
        self.change_region = change_region
        self.channels = channels
        self.num_classes = num_classes
        self.num_grades = num_grades
        self.code_stride = 2 ** (code_levels - 1)

    @property
    def unknown_grade(self) -> int:
        """Grade id meaning 'not one of the training grades'."""
        return self.num_grades

    def encode(self, image: Tensor) -> EncoderOutput:
        """Run the encoder."""
        return self.encoder(image)

    def decode(self, canvas: Tensor, canvas_enc: EncoderOutput, z_d: Tensor, coarse_mask_logits: Tensor, s_d: Tensor,
               defect_class: Tensor, grade: Tensor, region: Tensor | None = None) -> GeneratorOutput:
        """Paint the code ``(z_d, coarse_mask_logits, s_d, class)`` onto ``canvas`` (already encoded as ``canvas_enc``).

        ``region``: the pixels G may change (None: its own mask).
        """
        w = self.generator.style(s_d, canvas_enc.z_t, defect_class, grade)
        return self.generator(canvas, canvas_enc.features, z_d, coarse_mask_logits, w, region)

    def composite(self, canvas: Tensor, donor: Tensor, donor_mask: Tensor) -> tuple[Tensor, Tensor]:
        """The donor's defect put onto ``canvas`` (``composite_mode``) and the region G may change there.

        Args:
            canvas: ``[B, C, H, W]`` target crops.
            donor: ``[B, C, H, W]`` donor crops aligned with the canvas (the defect where it lands).
            donor_mask: ``[B, 1, H, W]`` the donor's defect pixels in {0, 1}.

        Returns:
            ``(composite, region)``; ``region`` ``[B, 1, H, W]`` in [0, 1]: 1 on the pasted alpha
            (``change_region`` ``"halo"``) or the donor's defect (``"defect"``) grown by ``region_dilation``, a Gaussian fade of ``region_feather`` px around it, 0
            where G may not change anything.
        """
        composite, alpha = put_defect(canvas, donor, donor_mask, self.composite_mode, self.composite_feather)
        base = alpha > 0 if self.change_region == "halo" else donor_mask >= 0.5
        region = feather_alpha(dilate(base.to(canvas.dtype), self.region_dilation), self.region_feather)
        return composite, region

    def transfer(self, canvas: Tensor, z_d: Tensor, coarse_mask_logits: Tensor, s_d: Tensor, defect_class: Tensor,
                 grade: Tensor, donor: Tensor | None = None, donor_mask: Tensor | None = None) -> GeneratorOutput:
        """Paint the code onto ``canvas`` (the traceable inference path).

        With ``defect_path="composite"`` the donor crops and masks the codes came from are needed.
        """
        if not self.composite_path:
            return self.decode(canvas, self.encoder(canvas), z_d, coarse_mask_logits, s_d, defect_class, grade)
        if donor is None or donor_mask is None:
            raise ValueError("a composite-path generator needs the donor crops and masks to transfer")
        composite, region = self.composite(canvas, donor, donor_mask)
        return self.decode(composite, self.encoder(composite), z_d, coarse_mask_logits, s_d, defect_class, grade, region)
