"""The fifth EfficientNet-B0 verification init measured (docs/models.md), block by block from the trained Lite0.

    python scripts/distill_b0.py OUT.pt [--steps 150] [--views 140] [--cap-penalty 0] [--qat unit|chain] [--data DIR]

Not part of the package: it reproduces the figures of docs/models.md ("A fifth try"), so that the next
attempt starts from them. The trained effnet_lite0 is the teacher, with its TensorFlow SAME padding made
symmetric so that its feature maps sit on EfficientNet-B0's grid. Its weights are copied into B0 by position
(`edgekit.models.verification._transplant`), with BatchNorm's epsilon and the stem's input normalisation
carried over exactly and each squeeze-and-excitation gate started near sigmoid(3). Then each unit of B0 (stem,
16 MBConv blocks, head) in turn is fitted with Adam so that, fed the output of the B0 units before it, it
gives the teacher's output (relative mean square error, `--views` calibration views of the bundled photos).
`--cap-penalty W` adds W times the mean squared excess of every SiLU output over 6 (the teacher's ReLU6 bound);
`--qat unit` fake-quantises each BatchNorm, SiLU, SE and unit output (what ONNX Runtime's int8 quantizes) to uint8 while fitting (straight-through gradients);
`--qat chain` also feeds each unit the fake-quantised output of the units before it; `--weight-levels 63` fake-quantises
the convolution weights per output channel while fitting (7-bit, as onnx-int8's).
With `--data` it prints top-1 on those photos for the teacher, the symmetric-padded teacher and B0.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from torch import nn
from torch.nn.utils import parametrize

from edgekit.calibration import load_calibration
from edgekit.models import create_model, get_card
from edgekit.models._layers import Conv2dSame, SqueezeExcitation
from edgekit.models.verification import _transplant

GATE = 3.0
CAP = 6.0


def symmetric_padding(model: nn.Module) -> None:
    """Replaces every TensorFlow-SAME convolution with the same weights under PyTorch's symmetric padding."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Conv2dSame):
                k = child.kernel_size[0]
                conv = nn.Conv2d(child.in_channels, child.out_channels, k, child.stride, (k - 1) // 2,
                                 groups=child.groups, bias=False)
                conv.weight.data.copy_(child.weight.data)
                setattr(parent, name, conv)


@torch.no_grad()
def start(teacher: nn.Module, student: nn.Module) -> None:
    """Lite0's weights in B0, epsilon and input normalisation carried over, SE gates near sigmoid(GATE)."""
    _transplant(teacher, student)
    norms = zip([m for m in teacher.modules() if isinstance(m, nn.BatchNorm2d)],
                [m for m in student.modules() if isinstance(m, nn.BatchNorm2d)])
    for t, s in norms:
        s.running_var.add_(t.eps - s.eps)
    t_card, s_card = get_card("effnet_lite0"), get_card("effnet_b0")
    scale = torch.tensor(s_card.std) / torch.tensor(t_card.std)
    offset = (torch.tensor(s_card.mean) - torch.tensor(t_card.mean)) / torch.tensor(t_card.std)
    weight = teacher.features[0][0].weight
    student.features[0][0].weight.copy_(weight * scale.view(1, 3, 1, 1))
    student.features[0][1].running_mean.sub_((weight * offset.view(1, 3, 1, 1)).sum((1, 2, 3)))
    for module in student.modules():
        if isinstance(module, SqueezeExcitation):
            module.fc2.weight.mul_(0.1)
            module.fc2.bias.fill_(GATE)
    for block in units(student)[1:-1]:
        [layer for layer in block.block if isinstance(layer, nn.Sequential)][-1][0].weight.div_(
            torch.sigmoid(torch.tensor(GATE)))


def units(model: nn.Module) -> list[nn.Module]:
    features = list(model.features)
    return [features[0], *[block for stage in features[1:-1] for block in stage], features[-1]]


def run(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([module(x[i:i + 20]) for i in range(0, len(x), 20)])


def fake_quant(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
    low, high = output.detach().amin().clamp(max=0), output.detach().amax().clamp(min=0)
    step = (high - low).clamp(min=1e-8) / 255
    zero = torch.round(-low / step)
    quantized = (torch.clamp(torch.round(output / step) + zero, 0, 255) - zero) * step
    return output + (quantized - output).detach()


class WeightFakeQuant(nn.Module):
    """Per-output-channel symmetric fake quantisation of a weight, on `levels` steps either side of zero."""

    def __init__(self, levels: int) -> None:
        super().__init__()
        self.levels = levels

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        step = weight.detach().abs().amax(dim=(1, 2, 3), keepdim=True).clamp(min=1e-12) / self.levels
        return weight + (torch.round(weight / step) * step - weight).detach()


def fit(unit: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, args, generator) -> tuple[float, float, list]:
    """Adam on one unit so that unit(inputs) matches targets; relative MSE before and after, and the hooks kept."""
    scale = targets.pow(2).mean()
    before = ((run(unit, inputs) - targets).pow(2).mean() / scale).item()
    outputs: list[torch.Tensor] = []
    silus = [m for m in unit.modules() if isinstance(m, nn.SiLU)]
    watching = [m.register_forward_hook(lambda m, i, o: outputs.append(o)) for m in silus] if args.cap_penalty else []
    quantized = [m for m in unit.modules() if isinstance(m, (nn.BatchNorm2d, nn.SiLU, SqueezeExcitation))] + [unit]
    quantizing = [m.register_forward_hook(fake_quant) for m in quantized] if args.qat else []
    convs = [m for m in unit.modules() if isinstance(m, nn.Conv2d)] if args.weight_levels else []
    for conv in convs:
        parametrize.register_parametrization(conv, "weight", WeightFakeQuant(args.weight_levels))
    optimizer = torch.optim.Adam(unit.parameters(), lr=args.lr)
    for _ in range(args.steps):
        index = torch.randint(0, len(inputs), (args.batch,), generator=generator)
        outputs.clear()
        loss = (unit(inputs[index]) - targets[index]).pow(2).mean() / scale
        if args.cap_penalty:
            loss = loss + args.cap_penalty * sum((o.abs() - CAP).clamp(min=0).pow(2).mean() for o in outputs) / CAP ** 2
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for conv in convs:
        parametrize.remove_parametrizations(conv, "weight", leave_parametrized=False)
    after = ((run(unit, inputs) - targets).pow(2).mean() / scale).item()
    kept = quantizing if args.qat == "chain" else []  # chain: the next unit is fed this unit's quantized output
    for hook in watching + [h for h in quantizing if h not in kept]:
        hook.remove()
    return before, after, kept


def top1(model: nn.Module, name: str, data: str) -> float:
    from edgekit.images import find_images, load_batch

    images = find_images(data, get_card(name))
    logits = run(model, torch.from_numpy(load_batch([i.path for i in images], get_card(name))))
    return (logits.argmax(1) == torch.tensor([i.label for i in images])).float().mean().item()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--views", type=int, default=140)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--cap-penalty", type=float, default=0.0)
    parser.add_argument("--qat", choices=("unit", "chain"), default=None)
    parser.add_argument("--weight-levels", type=int, default=0, help="fake-quantise conv weights while fitting (63: 7-bit)")
    parser.add_argument("--size", type=int, default=0, help="fit on views scaled to this many pixels (default: 224)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    began = time.time()
    teacher = create_model("effnet_lite0", weights="imagenet").eval()
    symmetric_padding(teacher)
    student = create_model("effnet_b0").eval()
    start(teacher, student)
    t_in = torch.from_numpy(load_calibration(get_card("effnet_lite0"), size=args.views).data)
    s_in = torch.from_numpy(load_calibration(get_card("effnet_b0"), size=args.views).data)
    if args.size:  # every unit is convolutional, so it can be fitted on smaller views
        t_in, s_in = (nn.functional.interpolate(x, size=args.size, mode="bilinear", antialias=True) for x in (t_in, s_in))
    generator = torch.Generator().manual_seed(0)
    for k, (t_unit, s_unit) in enumerate(zip(units(teacher), units(student))):
        t_out = run(t_unit, t_in)
        before, after, quantizing = fit(s_unit, s_in, t_out, args, generator)
        print(f"unit {k:2d} {tuple(t_out.shape[1:])}: relative MSE {before:.4f} -> {after:.4f} ({time.time() - began:.0f} s)")
        t_in, s_in = t_out, run(s_unit, s_in)
        for hook in quantizing:
            hook.remove()
    torch.save(student.state_dict(), args.out)
    if args.data:
        lite0 = create_model("effnet_lite0", weights="imagenet").eval()
        print(f"top-1 on {args.data}: effnet_lite0 {top1(lite0, 'effnet_lite0', args.data):.3f}, symmetric-padded "
              f"{top1(teacher, 'effnet_lite0', args.data):.3f}, effnet_b0 {top1(student, 'effnet_b0', args.data):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
