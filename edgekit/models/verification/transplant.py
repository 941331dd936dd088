"""The transplant kind of verification init: a trained Lite's weights copied by position, BatchNorm re-estimated."""

from __future__ import annotations

import torch
from torch import nn

from edgekit.models.seeded import measure_batchnorm

# Extra residual blocks of a deeper target start as this fraction of their copied block's output.
NEW_BLOCK_GAIN = 0.2


def fit_shape(tensor: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """`tensor` repeated along each dimension that is too short, then cut to `shape`."""
    for dim, size in enumerate(shape):
        if tensor.shape[dim] < size:
            repeats = [1] * tensor.ndim
            repeats[dim] = -(-size // tensor.shape[dim])
            tensor = tensor.repeat(*repeats)
        tensor = tensor.narrow(dim, 0, size)
    return tensor.clone()


def _copy_conv_bn(source: nn.Sequential, target: nn.Sequential) -> None:
    s_conv, s_bn, t_conv, t_bn = source[0], source[1], target[0], target[1]
    weight = fit_shape(s_conv.weight, t_conv.weight.shape)
    if t_conv.groups == 1:
        weight *= s_conv.weight.shape[1] / t_conv.weight.shape[1]  # repeated inputs would add up
    t_conv.weight.copy_(weight)
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(t_bn, name).copy_(fit_shape(getattr(s_bn, name), getattr(t_bn, name).shape))


def conv_layers(block: nn.Module) -> list[nn.Sequential]:
    """An MBConv block's convolutions, each with its BatchNorm (and activation), in order."""
    return [m for m in block.block if isinstance(m, nn.Sequential)]


def transplant(source: nn.Module, target: nn.Module) -> None:
    _copy_conv_bn(source.features[0], target.features[0])
    for source_stage, target_stage in zip(list(source.features)[1:-1], list(target.features)[1:-1]):
        for index, block in enumerate(target_stage):
            own = conv_layers(block)
            for s_layer, t_layer in zip(conv_layers(source_stage[min(index, len(source_stage) - 1)]), own):
                _copy_conv_bn(s_layer, t_layer)
            if index >= len(source_stage):
                own[-1][1].weight.mul_(NEW_BLOCK_GAIN)
                own[-1][1].bias.mul_(NEW_BLOCK_GAIN)
    _copy_conv_bn(source.features[-1], target.features[-1])
    s_fc, t_fc = source.classifier[-1], target.classifier[-1]
    t_fc.weight.copy_(fit_shape(s_fc.weight, t_fc.weight.shape) * (s_fc.weight.shape[1] / t_fc.weight.shape[1]))
    t_fc.bias.copy_(fit_shape(s_fc.bias, t_fc.bias.shape))


def reestimate(model: nn.Module, images: torch.Tensor, floors: dict[nn.Module, torch.Tensor]) -> None:
    """BatchNorm running statistics from `images` (cumulative average); everything else stays in eval mode.

    No variance falls below its floor. A few dozen views of 20 photos spread less than ImageNet does, and dividing
    by that smaller spread turns quiet channels into noise amplifiers: re-estimated without a floor, the trained
    effnet_lite2's own int8 agreed on 72.7% of decisive probes (98.2% with its trained variances as the floor), and
    its float32 ONNX export missed the fp32 tolerance.
    """
    measure_batchnorm(model, images)
    for norm, floor in floors.items():
        norm.running_var.copy_(torch.maximum(norm.running_var, floor))
