"""FP16 risk check with no GPU: every layer's activation range on the probes, then FP16 emulated on the CPU.

Run before building an FP16 engine (`edgekit check-fp16 MODEL`). A layer whose activations leave
FP16's range overflows to Inf; one whose values fall below FP16's smallest normal number loses
precision as subnormals or zeros. Both are flagged with the advice to keep that layer in FP32.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgekit.contract import Contract
from edgekit.models import create_model, model_card
from edgekit.parity import TOLERANCES
from edgekit.parity.metrics import compute, failures
from edgekit.parity.probes import build_probes

FP16_MAX = 65504.0
FP16_MIN_NORMAL = 2.0**-14
# Activations above FP16_MAX / HEADROOM leave too little room for the sums an engine accumulates in FP16.
HEADROOM = 16.0
UNDERFLOW_SHARE = 0.05


@dataclass
class LayerRange:
    """One layer's output over all probes."""

    name: str
    kind: str
    absmax: float
    underflow: float
    weight_absmax: float = 0.0
    flags: list[str] = field(default_factory=list)

    def severity(self) -> tuple[bool, bool, float]:
        """Overflow outranks underflow, which outranks closeness to FP16's limit."""
        overflow = max(self.absmax, self.weight_absmax) > FP16_MAX
        return overflow, self.underflow > UNDERFLOW_SHARE, max(self.absmax / FP16_MAX, self.underflow)


@dataclass
class Fp16Report:
    """Flagged layers, the worst one, and the parity FP16 emulation reached."""

    model: str
    probes: str
    layers: list[LayerRange]
    emulated: dict[str, Any]
    passed: bool
    failures: list[str]

    @property
    def flagged(self) -> list[LayerRange]:
        return [layer for layer in self.layers if layer.flags]

    @property
    def worst(self) -> LayerRange:
        return max(self.layers, key=lambda layer: layer.severity())

    def keep_fp32(self) -> list[str]:
        """Overflowing layers always; underflowing ones only when the emulation misses FP16 parity."""
        reasons = ("overflow", "underflow") if not self.passed else ("overflow",)
        return [layer.name for layer in self.layers if any(f.startswith(reasons) for f in layer.flags)]

    def to_dict(self) -> dict[str, Any]:
        worst = self.worst
        return {"model": self.model, "probes": self.probes, "passed": self.passed, "failures": self.failures,
                "worst_layer": asdict(worst), "keep_fp32": self.keep_fp32(),
                "flagged": [asdict(layer) for layer in self.flagged], "emulated_fp16": self.emulated,
                "layers_checked": len(self.layers)}


def check_fp16(model: str, weights: str | Path | None = None, data: str | Path | None = None,
               num_classes: int | None = None) -> Fp16Report:
    """Records every leaf layer's output range in FP32, then runs the model in FP16 and compares."""
    card = model_card(model, num_classes=num_classes)
    reference = create_model(model, weights=weights, num_classes=num_classes)
    probes = build_probes(card, Contract.from_card(card, batch=None), data)
    layers, logits = _ranges(reference, probes.reference)
    emulated_logits = _run(create_model(model, weights=weights, num_classes=num_classes).half(), probes.reference, half=True)
    metrics = compute(logits, emulated_logits, TOLERANCES["fp16"], probes.labels)
    images = probes.select("image")
    on_images = compute(logits[images], emulated_logits[images], TOLERANCES["fp16"], probes.labels[images])
    problems = failures(on_images, TOLERANCES["fp16"])
    emulated = {"all_probes": metrics.to_dict(), "images": on_images.to_dict(),
                "method": "torch .half() on the CPU: fp16 weights and activations, every layer (no FP32 fallback)"}
    return Fp16Report(card.name, probes.source, layers, emulated, not problems, problems)


def _ranges(model: nn.Module, batch: np.ndarray) -> tuple[list[LayerRange], np.ndarray]:
    stats: dict[str, list[float]] = {}
    kinds: dict[str, str] = {}
    weights: dict[str, float] = {}

    def hook(name: str):
        def record(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            values = output.detach().abs()
            nonzero = values[values > 0]
            entry = stats.setdefault(name, [0.0, 0.0, 0.0])
            entry[0] = max(entry[0], float(values.max()))
            entry[1] += float((nonzero < FP16_MIN_NORMAL).sum())
            entry[2] += float(nonzero.numel())
        return record

    handles = []
    leaves = [(n, m) for n, m in model.named_modules() if not list(m.children()) and not isinstance(m, (nn.Dropout, nn.Identity))]
    for (name, module), following in zip(leaves, leaves[1:] + [("", None)]):
        # Engines fold BatchNorm into the convolution before it: that convolution's raw output never exists.
        if isinstance(module, nn.Conv2d) and isinstance(following[1], nn.BatchNorm2d):
            continue
        kinds[name] = type(module).__name__
        weights[name] = max((float(p.detach().abs().max()) for p in module.parameters(recurse=False)), default=0.0)
        handles.append(module.register_forward_hook(hook(name)))
    try:
        logits = _run(model, batch, half=False)
    finally:
        for handle in handles:
            handle.remove()
    layers = []
    for name, (absmax, under, nonzero) in stats.items():
        layer = LayerRange(name, kinds[name], absmax, under / nonzero if nonzero else 0.0, weights[name])
        if layer.weight_absmax > FP16_MAX:
            layer.flags.append(f"overflow: a parameter of {layer.weight_absmax:.4g} exceeds FP16's {FP16_MAX:.0f}; "
                               "keep in FP32")
        if absmax > FP16_MAX:
            layer.flags.append(f"overflow: max |x| {absmax:.4g} exceeds FP16's {FP16_MAX:.0f}; keep in FP32")
        elif absmax > FP16_MAX / HEADROOM:
            layer.flags.append(f"little headroom: max |x| {absmax:.4g} is over 1/{HEADROOM:.0f} of FP16's range")
        if layer.underflow > UNDERFLOW_SHARE:
            layer.flags.append(f"underflow: {layer.underflow:.1%} of nonzero values are below FP16's smallest normal "
                               f"{FP16_MIN_NORMAL:.2e}; keep in FP32 if parity suffers")
        layers.append(layer)
    return layers, logits


def _run(model: nn.Module, batch: np.ndarray, half: bool, chunk: int = 16) -> np.ndarray:
    outputs = []
    with torch.no_grad():
        for start in range(0, len(batch), chunk):
            x = torch.from_numpy(batch[start:start + chunk])
            outputs.append(model(x.half() if half else x).float().numpy())
    return np.concatenate(outputs)
