"""PyTorch model of the DefectClassifier: torchvision backbone, light FPN decoder, two heads.

The graph has no data-dependent control flow (fixed stages, resizes to the shapes of the
feature maps and the input), so it traces cleanly to ONNX/OpenVINO with dynamic batch and size.
"""

from __future__ import annotations

import urllib.error
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from anomalib.data import InferenceBatch
from torch import Tensor, nn

from anomalib_defectgan.errors import DefectGanError

# Backbone -> (module slices giving strides 8, 16, 32; their channel counts).
BACKBONES: dict[str, tuple[tuple[tuple[str, ...] | tuple[int, int], ...], tuple[int, int, int]]] = {
    "resnet18": ((("conv1", "bn1", "relu", "maxpool", "layer1", "layer2"), ("layer3",), ("layer4",)), (128, 256, 512)),
    "resnet50": ((("conv1", "bn1", "relu", "maxpool", "layer1", "layer2"), ("layer3",), ("layer4",)), (512, 1024, 2048)),
    "mobilenet_v3_large": (((0, 7), (7, 13), (13, 17)), (40, 112, 960)),
    "efficientnet_b0": (((0, 4), (4, 6), (6, 9)), (40, 112, 1280)),
}


def _weights_hint(backbone: str) -> str:
    weights = torchvision.models.get_model_weights(backbone).DEFAULT
    file_name = Path(weights.url).name
    return (f"put {file_name} (from {weights.url}) into $TORCH_HOME/hub/checkpoints/ "
            f"(default ~/.cache/torch/hub/checkpoints/), or pass weights_path=/path/to/{backbone}.pth "
            f"(a state_dict loaded with weights_only=True), or use pretrained=False")


def build_backbone(backbone: str, pretrained: bool = False, weights_path: str | None = None) -> nn.Module:
    """Build a torchvision classification network, optionally with ImageNet or local weights.

    Args:
        backbone: One of :data:`BACKBONES`.
        pretrained: Load torchvision's ImageNet weights (downloaded once into ``$TORCH_HOME``).
        weights_path: A local ``.pth`` state dict of the same torchvision network (wins over
            ``pretrained``); the classifier layer may be missing.

    Raises:
        DefectGanError: Unknown backbone, weights that cannot be fetched or a bad weights file.
    """
    if backbone not in BACKBONES:
        raise DefectGanError(f"unknown backbone {backbone!r}; choose one of {sorted(BACKBONES)}")
    if weights_path is not None:
        network = torchvision.models.get_model(backbone, weights=None)
        path = Path(weights_path)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError as err:
            raise DefectGanError(f"{path}: weights file not found") from err
        except Exception as err:
            raise DefectGanError(f"{path}: cannot load as a weights_only state_dict ({err})") from err
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        try:
            missing, unexpected = network.load_state_dict(state, strict=False)
        except (RuntimeError, TypeError, AttributeError) as err:
            raise DefectGanError(f"{path}: not a {backbone} state_dict ({err})") from err
        missing = [key for key in missing if not key.startswith(("fc.", "classifier."))]
        if missing or unexpected:
            raise DefectGanError(f"{path}: not a {backbone} state_dict "
                                 f"(missing {missing[:3]}, unexpected {list(unexpected)[:3]})")
        return network
    if not pretrained:
        return torchvision.models.get_model(backbone, weights=None)
    try:
        return torchvision.models.get_model(backbone, weights="DEFAULT")
    except (urllib.error.URLError, OSError, RuntimeError) as err:
        raise DefectGanError(f"could not fetch the ImageNet weights of {backbone} ({err}); "
                             f"{_weights_hint(backbone)}") from err


class _Stages(nn.Module):
    """The backbone cut into three stages of output strides 8, 16 and 32."""

    def __init__(self, network: nn.Module, backbone: str) -> None:
        super().__init__()
        slices, _ = BACKBONES[backbone]
        stages = []
        for part in slices:
            if isinstance(part[0], int):
                start, stop = part
                stages.append(nn.Sequential(*list(network.features)[start:stop]))
            else:
                stages.append(nn.Sequential(*[getattr(network, name) for name in part]))
        self.stages = nn.ModuleList(stages)

    def forward(self, images: Tensor) -> list[Tensor]:
        features = []
        x = images
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class DefectClassifierModel(nn.Module):
    """Backbone + FPN-style segmentation decoder + image classification head.

    Args:
        backbone: ``resnet18``, ``resnet50``, ``mobilenet_v3_large`` or ``efficientnet_b0``.
        pretrained: Start from torchvision's ImageNet weights (needs them cached or a network).
        weights_path: Local state dict of the backbone network, loaded with ``weights_only=True``.
        decoder_channels: Width of the decoder.

    In training mode ``forward`` returns ``(score_logits [B], map_logits [B, 1, H, W])``; in eval
    mode it returns :class:`anomalib.data.InferenceBatch` with ``pred_score`` = sigmoid of the
    score logit and ``anomaly_map`` = per-pixel defect probability at the input size.
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        pretrained: bool = False,
        weights_path: str | None = None,
        decoder_channels: int = 64,
    ) -> None:
        super().__init__()
        self.encoder = _Stages(build_backbone(backbone, pretrained, weights_path), backbone)
        channels = BACKBONES[backbone][1]
        width = decoder_channels
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in channels)
        self.smooth = _conv_bn_relu(width, width)
        self.seg_head = nn.Conv2d(width, 1, 1)
        # Score = MLP(pooled deepest features) + a linear term of the map logits' max and mean. The
        # map term starts as "max of the map", so the score follows the (faster-learning,
        # pixel-supervised) map from the first steps; the MLP adds global evidence.
        self.cls_head = nn.Sequential(nn.Linear(channels[-1], width), nn.ReLU(inplace=True), nn.Linear(width, 1))
        self.map_to_score = nn.Linear(2, 1)
        with torch.no_grad():
            self.map_to_score.weight.copy_(torch.tensor([[1.0, 0.0]]))
            self.map_to_score.bias.zero_()

    def logits(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(score_logits [B], map_logits [B, 1, H, W])`` for normalised images."""
        c8, c16, c32 = self.encoder(images)
        p32 = self.lateral[2](c32)
        p16 = self.lateral[1](c16) + F.interpolate(p32, size=c16.shape[-2:], mode="nearest")
        p8 = self.lateral[0](c8) + F.interpolate(p16, size=c8.shape[-2:], mode="nearest")
        map_small = self.seg_head(self.smooth(p8))
        map_stats = torch.cat([F.adaptive_max_pool2d(map_small, 1), F.adaptive_avg_pool2d(map_small, 1)], dim=1)
        score = (self.cls_head(F.adaptive_avg_pool2d(c32, 1).flatten(1)) + self.map_to_score(map_stats.flatten(1)))
        score = score.squeeze(1)
        map_logits = F.interpolate(map_small, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return score, map_logits

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor] | InferenceBatch:
        """Logits in training, :class:`InferenceBatch` of probabilities in eval mode."""
        score, map_logits = self.logits(images)
        if self.training:
            return score, map_logits
        return InferenceBatch(pred_score=torch.sigmoid(score), anomaly_map=torch.sigmoid(map_logits))
