"""Bias correction of a PT2E-quantized graph before ExecuTorch lowering (see the package docstring).

`LayerStatistics` keeps each conv/linear layer's float weights from a prepared graph (convert_pt2e
rewrites that graph in place) and hooks its activation observers, so that the calibration pass also
records each layer input's mean per channel; `correct_biases` then edits the float biases of the
converted graph, whose int8 weights XNNPACK takes as they are.
"""

from __future__ import annotations

import functools

import torch

from edgekit.quantization.bias_correction import output_shift

LAYERS = ("aten.conv2d", "aten.linear")


def _layers(graph_module: torch.fx.GraphModule) -> dict[str, torch.fx.Node]:
    return {node.name: node for node in graph_module.graph.nodes
            if node.op == "call_function" and str(node.target).startswith(LAYERS)}


def _attribute(module: torch.nn.Module, target: str):
    return functools.reduce(getattr, target.split("."), module)


class LayerStatistics:
    """The float weights of every conv/linear layer of a prepared (observed) graph, and the mean per channel of its
    input while the graph calibrates. Use as a context manager around the calibration calls.
    """

    def __init__(self, prepared: torch.fx.GraphModule) -> None:
        self.weights: dict[str, torch.Tensor] = {}
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}
        self.handles = []
        for name, node in _layers(prepared).items():
            observer, weight = node.args[0], node.args[1]
            if not (isinstance(observer, torch.fx.Node) and observer.op == "call_module"
                    and isinstance(weight, torch.fx.Node) and weight.op == "call_module"):
                continue
            self.weights[name] = _value(prepared, weight.args[0]).detach().clone()
            module = _attribute(prepared, observer.target)
            self.handles.append(module.register_forward_hook(functools.partial(self._record, name)))

    def _record(self, name: str, _module, _inputs, output: torch.Tensor) -> None:
        values = output.detach().double()
        per_channel = values.mean(dim=(0, 2, 3)) if values.dim() == 4 else values.reshape(-1, values.shape[-1]).mean(0)
        self.sums[name] = self.sums.get(name, 0) + per_channel
        self.counts[name] = self.counts.get(name, 0) + 1

    def __enter__(self) -> LayerStatistics:
        return self

    def __exit__(self, *exc) -> None:
        for handle in self.handles:
            handle.remove()

    def means(self) -> dict[str, torch.Tensor]:
        return {name: total / self.counts[name] for name, total in self.sums.items()}


def correct_biases(converted: torch.fx.GraphModule, statistics: LayerStatistics) -> dict:
    """Takes each int8 layer's mean weight-rounding shift out of its float bias in `converted` (replaced, not edited
    in place, so no tensor shared with the float model changes). Layers are matched by node name.
    """
    import numpy as np

    means = statistics.means()
    corrected, largest = 0, 0.0
    for name, node in _layers(converted).items():
        weight, bias = node.args[1], node.args[2] if len(node.args) > 2 else None
        if name not in means or not isinstance(bias, torch.fx.Node) or bias.op != "get_attr" \
                or "dequantize_per_channel" not in str(getattr(weight, "target", "")):
            continue
        quantized, scale, zero_point = (_value(converted, a) for a in weight.args[:3])
        shape = [1] * quantized.dim()
        shape[int(weight.args[3])] = -1
        rounded = (quantized.double() - zero_point.double().reshape(shape)) * scale.double().reshape(shape)
        original = statistics.weights[name].double()
        rounding = (rounded - original).numpy()
        groups = int(node.args[6]) if len(node.args) > 6 else 1
        if rounding.ndim == 2:
            rounding = rounding[:, :, None, None]
        shift = output_shift(rounding, means[name].numpy(), groups)
        owner, _, attribute = bias.target.rpartition(".")
        holder = _attribute(converted, owner) if owner else converted
        old = getattr(holder, attribute)
        new = (old.double() - torch.from_numpy(shift)).to(old.dtype)
        setattr(holder, attribute, torch.nn.Parameter(new, requires_grad=False) if isinstance(old, torch.nn.Parameter) else new)
        corrected += 1
        largest = max(largest, float(np.max(np.abs(shift))))
    return {"method": "empirical bias correction of weight rounding (mean layer inputs of the observed float graph "
                      "on the calibration set)", "layers_corrected": corrected, "largest_shift": float(f"{largest:.4g}")}


def _value(module: torch.fx.GraphModule, argument):
    """The tensor or constant an argument of a converted graph's node stands for."""
    if isinstance(argument, torch.fx.Node):
        if argument.op != "get_attr":
            raise RuntimeError(f"bias correction: expected a constant, found {argument.op} {argument.target}")
        return _attribute(module, argument.target)
    return torch.tensor(argument) if not isinstance(argument, torch.Tensor) else argument
