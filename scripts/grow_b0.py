"""effnet_b1-b3 grown from effnet_b0's verification init without changing what it computes (docs/models.md, "B1-B3").

    python scripts/grow_b0.py OUT.pt --model effnet_b1 [--gain 0]

Not part of the package: a measured candidate for B1-B3's verification init, kept so that the figures in
docs/models.md can be rebuilt. Wider layers repeat B0's channels, and every fan-in is divided by how often its channel
is repeated (Net2Net's widening); each stage's extra blocks copy its last block with the projection's BatchNorm scale
and shift multiplied by `--gain`, so at 0 they pass their input on exactly. The grown network computes B0's function
to float rounding; its artifacts are then judged with `edgekit export MODEL --weights OUT.pt --target onnx-int8,...`.
"""

from __future__ import annotations

import argparse
import sys

import torch
from torch import nn

from edgekit.models import create_model, get_card
from edgekit.models.verification import verification_weights
from edgekit.models.verification.transplant import conv_layers, fit_shape


def widened(tensor: torch.Tensor, shape: torch.Size, fan_in: int | None = None) -> torch.Tensor:
    """`fit_shape` (each dimension repeated cyclically, or cut, to `shape`), with the `fan_in` dimension's repeats
    divided by their count, so that a layer reading repeated channels sums to what it did."""
    grown = fit_shape(tensor, shape)
    old, size = (tensor.shape[fan_in], shape[fan_in]) if fan_in is not None else (0, 0)
    if size > old:
        index = torch.arange(size) % old
        counts = torch.bincount(index).to(grown.dtype)[index]
        grown /= counts.view([-1 if d == fan_in else 1 for d in range(grown.ndim)])
    return grown


@torch.no_grad()
def copy(source: nn.Module, target: nn.Module) -> None:
    """Every convolution, BatchNorm and linear layer of `source` into the same-typed layer of `target`, widened."""
    for (_, s), (name, t) in zip(source.named_modules(), target.named_modules()):
        if type(s) is not type(t):
            raise TypeError(f"{name}: {type(s).__name__} against {type(t).__name__}")
        if isinstance(t, (nn.Conv2d, nn.Linear)):
            grouped = isinstance(t, nn.Conv2d) and t.groups > 1
            t.weight.copy_(widened(s.weight, t.weight.shape, None if grouped else 1))
            if t.bias is not None:
                t.bias.copy_(widened(s.bias, t.bias.shape))
        elif isinstance(t, nn.BatchNorm2d):
            for key in ("weight", "bias", "running_mean", "running_var"):
                getattr(t, key).copy_(widened(getattr(s, key), getattr(t, key).shape))
            t.eps = s.eps


@torch.no_grad()
def grow(b0: nn.Module, target: nn.Module, gain: float) -> None:
    copy(b0.features[0], target.features[0])
    for b0_stage, stage in zip(list(b0.features)[1:-1], list(target.features)[1:-1]):
        for index, block in enumerate(stage):
            copy(b0_stage[min(index, len(b0_stage) - 1)], block)
            if index >= len(b0_stage):  # an extra block, residual: gain 0 leaves only its skip connection
                norm = conv_layers(block)[-1][1]
                norm.weight.mul_(gain)
                norm.bias.mul_(gain)
    copy(b0.features[-1], target.features[-1])
    copy(b0.classifier, target.classifier)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--model", choices=("effnet_b1", "effnet_b2", "effnet_b3"), default="effnet_b1")
    parser.add_argument("--gain", type=float, default=0.0)
    args = parser.parse_args(argv)
    b0 = create_model("effnet_b0", weights=str(verification_weights(get_card("effnet_b0")))).eval()
    target = create_model(args.model).eval()
    grow(b0, target, args.gain)
    x = torch.randn(4, 3, 224, 224)
    with torch.no_grad():
        print(f"{args.model}, gain {args.gain}: max |B0 - grown| on random input {(b0(x) - target(x)).abs().max():.3g}")
    torch.save(target.state_dict(), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
