"""Small building blocks shared by the architectures, named as torchvision names them."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Rounds a channel count to a multiple of `divisor`, never down by more than 10%."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow's SAME padding, which pads more at the bottom and right.

    Checkpoints converted from TensorFlow (EfficientNet-Lite) need it on stride-2 layers,
    where symmetric padding would shift every feature map by a pixel.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s, d in zip(x.shape[-1:-3:-1], self.kernel_size[::-1], self.stride[::-1], self.dilation[::-1]):
            # Ceil division written with non-negative operands only: Python floors and ONNX truncates,
            # so -(-size // s) exports wrong whenever size is odd.
            total = max(((size + s - 1) // s - 1) * s + (k - 1) * d + 1 - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class ConvBNAct(nn.Sequential):
    """Conv2d, BatchNorm2d and an optional activation; keys `0`, `1` as torchvision's Conv2dNormActivation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        activation: Callable[[], nn.Module] | None = nn.ReLU,
        bn_eps: float = 1e-5,
        same_padding: bool = False,
    ) -> None:
        if same_padding:
            conv: nn.Conv2d = Conv2dSame(in_channels, out_channels, kernel_size, stride, 0, groups=groups, bias=False)
        else:
            padding = (kernel_size - 1) // 2
            conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False)
        layers: list[nn.Module] = [conv, nn.BatchNorm2d(out_channels, eps=bn_eps)]
        if activation is not None:
            layers.append(activation())
        super().__init__(*layers)
        self.out_channels = out_channels


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation with 1x1 convolutions `fc1` and `fc2`, as torchvision's."""

    def __init__(self, channels: int, squeeze_channels: int, activation: Callable[[], nn.Module] = nn.SiLU) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)
        self.activation = activation()
        self.scale_activation = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return scale * x


def stochastic_depth(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Drops whole samples of a residual branch with probability `p` while training."""
    if not training or p == 0.0:
        return x
    keep = x.new_empty([x.shape[0]] + [1] * (x.ndim - 1)).bernoulli_(1.0 - p)
    return x * keep / (1.0 - p)
