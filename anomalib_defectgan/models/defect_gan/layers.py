"""Equalised-learning-rate layers and StyleGAN2 modulated convolutions in plain PyTorch.

Every layer scales its weights at run time by ``1 / sqrt(fan_in)`` (equalised learning rate), so
Adam with a large learning rate treats all layers alike. Nothing here needs a custom CUDA kernel,
and nothing branches on tensor values, so the modules trace for ONNX / OpenVINO export.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LRELU_GAIN = math.sqrt(2.0)


class ScaledLeakyReLU(nn.Module):
    """Leaky ReLU (slope 0.2) times sqrt(2), keeping activations at unit variance."""

    def forward(self, x: Tensor) -> Tensor:
        """Apply the activation."""
        return F.leaky_relu(x, 0.2) * LRELU_GAIN


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate.

    Args:
        in_features: Input size.
        out_features: Output size.
        bias_init: Initial bias value.
        lr_mul: Learning-rate multiplier (StyleGAN's mapping network uses 0.01).
        activation: Apply :class:`ScaledLeakyReLU` after the bias.
    """

    def __init__(self, in_features: int, out_features: int, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activation: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init) / lr_mul))
        self.scale = lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        """Apply the layer to ``[..., in_features]``."""
        out = F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)
        return F.leaky_relu(out, 0.2) * LRELU_GAIN if self.activation else out


class EqualConv2d(nn.Module):
    """2-D convolution with equalised learning rate ('same' padding).

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Square kernel size (odd).
        stride: 1, or 2 to halve the resolution.
        bias: Learn a bias.
        activation: Apply :class:`ScaledLeakyReLU` after the bias.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 bias: bool = True, activation: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.stride = stride
        self.padding = kernel_size // 2
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        """Convolve ``x`` ``[B, in, H, W]``."""
        out = F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)
        return F.leaky_relu(out, 0.2) * LRELU_GAIN if self.activation else out


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated convolution with optional demodulation.

    Implemented in the non-fused form (scale the input by the style, convolve with the shared
    weight, scale the output by the demodulation factor). It is mathematically the same as the
    grouped-convolution form, faster on CPU, and exports as ordinary ops.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Square kernel size (odd).
        style_dim: Size of the style vector ``w``.
        demodulate: Normalise each output channel to unit expected variance.
        activation: Add a bias and apply :class:`ScaledLeakyReLU`.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, activation: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.affine = EqualLinear(style_dim, in_channels, bias_init=1.0)
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.padding = kernel_size // 2
        self.demodulate = demodulate
        self.activation = activation

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        """Convolve ``x`` ``[B, in, H, W]`` modulated by ``w`` ``[B, style_dim]``."""
        style = self.affine(w)  # [B, in]
        weight = self.weight * self.scale
        out = F.conv2d(x * style[:, :, None, None], weight, padding=self.padding)
        if self.demodulate:
            # sum over in-channels and taps of (W[o, i, k] * s[b, i])^2
            energy = (style * style) @ (weight * weight).sum(dim=(2, 3)).t()  # [B, out]
            out = out * torch.rsqrt(energy + 1e-8)[:, :, None, None]
        out = out + self.bias[None, :, None, None]
        return F.leaky_relu(out, 0.2) * LRELU_GAIN if self.activation else out


class ResidualDownBlock(nn.Module):
    """StyleGAN2 discriminator residual block: two convs, then halve the resolution."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = EqualConv2d(in_channels, in_channels, 3, activation=True)
        self.conv2 = EqualConv2d(in_channels, out_channels, 3, stride=2, activation=True)
        self.skip = EqualConv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """Return the block output at half resolution."""
        out = self.conv2(self.conv1(x))
        skip = self.skip(F.avg_pool2d(x, 2))
        return (out + skip) / math.sqrt(2.0)


class GradientReversal(torch.autograd.Function):
    """Identity forward, gradient times ``-scale`` backward (domain-adversarial training)."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> tuple[Tensor, None]:
        return -ctx.scale * grad, None


def grad_reverse(x: Tensor, scale: float = 1.0) -> Tensor:
    """Reverse (and scale) the gradient flowing back into ``x``."""
    return GradientReversal.apply(x, scale)


def channel_plan(base: int, maximum: int, levels: int) -> list[int]:
    """Channels per resolution level: ``base`` doubled at each halving, capped at ``maximum``."""
    return [min(base * 2**i, maximum) for i in range(levels)]
