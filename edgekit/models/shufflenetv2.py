"""ShuffleNetV2 (Ma et al., 2018): the ImageNet layout of torchvision and a 32x32 CIFAR variant."""

from __future__ import annotations

import torch
from torch import nn

from edgekit.models._registry import register_model
from edgekit.card import CIFAR10_MEAN, CIFAR10_STD, ModelCard

STAGE_REPEATS = (4, 8, 4)


# Channels per width multiplier (Table 5 of the paper; torchvision uses the same).
CONFIGS = {
    "x0_5": (24, 48, 96, 192, 1024),
    "x1_0": (24, 116, 232, 464, 1024),
    "x1_5": (24, 176, 352, 704, 1024),
    "x2_0": (24, 244, 488, 976, 2048),
}


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleaves the channels of `groups` equal groups."""
    batch, channels, height, width = x.shape
    x = x.view(batch, groups, channels // groups, height, width)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(batch, channels, height, width)


def _depthwise(channels: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, 3, stride, 1, groups=channels, bias=False)


def _pointwise(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, 1, 0, bias=False)


class InvertedResidual(nn.Module):
    """The ShuffleNetV2 unit: split (or duplicate when striding), transform, concatenate, shuffle."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        branch = out_channels // 2
        if stride > 1:
            self.branch1 = nn.Sequential(
                _depthwise(in_channels, stride),
                nn.BatchNorm2d(in_channels),
                _pointwise(in_channels, branch),
                nn.BatchNorm2d(branch),
                nn.ReLU(inplace=True),
            )
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(
            _pointwise(in_channels if stride > 1 else branch, branch),
            nn.BatchNorm2d(branch),
            nn.ReLU(inplace=True),
            _depthwise(branch, stride),
            nn.BatchNorm2d(branch),
            _pointwise(branch, branch),
            nn.BatchNorm2d(branch),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    """ShuffleNetV2 with torchvision's module names.

    Args:
        channels: stem, stage 2, 3 and 4, and final 1x1 conv channels.
        num_classes: size of the classifier.
        cifar: 32x32 variant: stride-1 stem and no max-pool.
    """

    def __init__(self, channels: tuple[int, ...], num_classes: int = 1000, cifar: bool = False) -> None:
        super().__init__()
        stem = channels[0]
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, stem, 3, 1 if cifar else 2, 1, bias=False),
            nn.BatchNorm2d(stem),
            nn.ReLU(inplace=True),
        )
        self.maxpool = nn.Identity() if cifar else nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_channels = stem
        for index, (repeats, out_channels) in enumerate(zip(STAGE_REPEATS, channels[1:4]), start=2):
            units = [InvertedResidual(in_channels, out_channels, 2)]
            units += [InvertedResidual(out_channels, out_channels, 1) for _ in range(repeats - 1)]
            setattr(self, f"stage{index}", nn.Sequential(*units))
            in_channels = out_channels
        self.conv5 = nn.Sequential(
            nn.Conv2d(in_channels, channels[4], 1, 1, 0, bias=False),
            nn.BatchNorm2d(channels[4]),
            nn.ReLU(inplace=True),
        )
        self.fc = nn.Linear(channels[4], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.stage4(self.stage3(self.stage2(x)))
        x = self.conv5(x).mean([2, 3])
        return self.fc(x)


def _imagenet_card(width: str, params: int, macs: int, resize: int) -> ModelCard:
    return ModelCard(
        name=f"shufflenet_v2_{width}",
        family="shufflenet_v2",
        input_size=224,
        resize_size=resize,
        interpolation="bilinear",
        num_classes=1000,
        params=params,
        macs=macs,
    )


def _cifar_card(width: str, params: int, macs: int) -> ModelCard:
    return ModelCard(
        name=f"shufflenet_v2_cifar_{width}",
        family="shufflenet_v2_cifar",
        input_size=32,
        resize_size=32,
        interpolation="bilinear",
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
        num_classes=10,
        label_set="cifar-10",
        params=params,
        macs=macs,
    )


def _build(width: str, cifar: bool):
    def build(num_classes: int) -> ShuffleNetV2:
        return ShuffleNetV2(CONFIGS[width], num_classes=num_classes, cifar=cifar)

    return build


# Resize sizes follow torchvision's published transforms for each width.
for _width, _params, _macs, _resize in (
    ("x0_5", 1366792, 40476448, 256),
    ("x1_0", 2278604, 144907992, 256),
    ("x1_5", 3503624, 295759392, 232),
    ("x2_0", 7393996, 583253464, 232),
):
    register_model(_imagenet_card(_width, _params, _macs, _resize))(_build(_width, cifar=False))

for _width, _params, _macs in (
    ("x0_5", 352042, 10902016),
    ("x1_0", 1263854, 45002112),
    ("x1_5", 2488874, 94259712),
    ("x2_0", 5365486, 187811200),
):
    register_model(_cifar_card(_width, _params, _macs))(_build(_width, cifar=True))
