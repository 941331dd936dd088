"""Per-layer error of an artifact against PyTorch: the figures, the table, the JSON and the plot.

SQNR (signal to quantization noise ratio) of a layer is 10·log10(Σ ref² / Σ (artifact − ref)²)
over all probe images, in dB: 40 dB means the error's power is 1/10,000 of the signal's. The
error a layer *adds* is its noise-to-signal ratio minus that of the inputs it reads (error that
merely flows through keeps the ratio); it is written as an SQNR too ("added dB": lower is worse),
so a layer that adds nothing has none and the layer where error enters ranks first.

A layer whose PyTorch output is exactly zero on every probe (a dead branch: a BatchNorm with zero scale and shift,
say) has no SQNR: its figures are null in the JSON and it is not ranked; any error it lets through shows in the
layer that reads it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# An artifact tensor equal to its reference has no noise; its SQNR is shown as this (float32 is ~150 dB).
EXACT_DB = 150.0


@dataclass
class LayerError:
    """One matched layer: the PyTorch module(s) it computes and its error against the reference."""

    index: int
    module: str
    modules: list[str]
    kind: str
    shape: list[int]
    artifact_tensor: str
    artifact_op: str
    matched_by: str
    sqnr_db: float | None  # None: the reference is zero on every probe (see the module's docstring)
    relative_error: float | None
    cosine: float | None
    input_sqnr_db: float
    added_db: float | None
    drop_db: float | None

    @property
    def added(self) -> float:
        """The noise-to-signal ratio this layer adds (0 when it adds none)."""
        return 0.0 if self.added_db is None else 10 ** (-self.added_db / 10)


@dataclass
class Report:
    """Every matched layer in network order, what could not be matched, and the probes used."""

    model: str
    target: str
    artifact: str
    probes: str
    images: int
    layers: list[LayerError]
    unmatched_tensors: list[str] = field(default_factory=list)
    unmatched_modules: list[str] = field(default_factory=list)
    coverage: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)

    def worst(self, count: int = 10) -> list[LayerError]:
        """The layers that add the most error, biggest first."""
        adding = [layer for layer in self.layers if layer.added_db is not None]
        return sorted(adding, key=lambda layer: layer.added_db)[:count]

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "target": self.target, "artifact": self.artifact, "probes": self.probes,
                "images": self.images, "metric": __doc__.split("\n\n")[1].replace("\n", " "),
                "worst": [layer.module for layer in self.worst()], "coverage": self.coverage,
                "output_sqnr_db": self.layers[-1].sqnr_db if self.layers else None,
                "layers": [asdict(layer) for layer in self.layers], "unmatched_modules": self.unmatched_modules,
                "unmatched_tensors": self.unmatched_tensors, "notes": self.notes, "files": self.files}

    def table(self, count: int = 10) -> str:
        """A readable summary: the layers where error enters, worst first, then coverage and notes."""
        lines = [f"{self.model} {self.target}: {len(self.layers)} layers compared with PyTorch on {self.images} images",
                 f"  probes: {self.probes}"]
        if self.layers:
            lines.append(f"  output (logits) SQNR {self.layers[-1].sqnr_db:.1f} dB")
        lines.append("  where error enters, biggest first (added dB: the SQNR of the error this layer adds; lower is worse):")
        lines.append(f"  {'#':>3}  {'module':<28} {'ops':<28} {'added dB':>8} {'SQNR dB':>8} {'in dB':>7}")
        for layer in self.worst(count):
            lines.append(f"  {layer.index:>3}  {layer.module:<28} {_short(layer.kind, 28):<28} {layer.added_db:>8.1f} "
                         f"{layer.sqnr_db:>8.1f} {layer.input_sqnr_db:>7.1f}")
        covered = self.coverage
        lines.append(f"  coverage: {covered.get('matched', 0)} of {covered.get('weighted', 0)} conv/linear modules compared; "
                     f"{covered.get('by_name', 0)} of {len(self.layers)} layers paired with PyTorch by name, the rest "
                     "by shape and value")
        if self.unmatched_modules:
            lines.append(f"  not matched: {', '.join(self.unmatched_modules)}")
        lines += [f"  note: {note}" for note in self.notes]
        lines += [f"  wrote {path}" for path in self.files.values()]
        return "\n".join(lines)

    def plot(self, path: Path, count: int = 5) -> None:
        """SQNR along the network and the error each layer adds, the worst `count` labelled."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        x = [layer.index for layer in self.layers]
        figure, (top, bottom) = plt.subplots(2, 1, figsize=(12, 7), sharex=True)
        top.plot(x, [math.nan if layer.sqnr_db is None else min(layer.sqnr_db, EXACT_DB) for layer in self.layers],
                 marker=".")
        top.set_ylabel("SQNR vs PyTorch (dB)")
        top.set_title(f"{self.model} {self.target}: error along the network ({self.images} images)")
        top.grid(alpha=0.3)
        bottom.bar(x, [100 * layer.added for layer in self.layers], color="tab:red")
        bottom.set_ylabel("noise added (% of signal power)")
        bottom.set_xlabel("layer (network order)")
        bottom.grid(alpha=0.3)
        for layer in self.worst(count):
            bottom.annotate(layer.module, (layer.index, 100 * layer.added), fontsize=7, rotation=30,
                            xytext=(3, 3), textcoords="offset points")
        figure.tight_layout()
        figure.savefig(path, dpi=120)
        plt.close(figure)


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


class Accumulator:
    """Sums of signal and error power per point, over batches."""

    def __init__(self) -> None:
        self.sums: dict[str, np.ndarray] = {}

    def add(self, point: str, reference: np.ndarray, artifact: np.ndarray) -> None:
        reference, artifact = reference.astype(np.float64), artifact.astype(np.float64).reshape(reference.shape)
        error = artifact - reference
        sums = np.array([np.sum(reference**2), np.sum(error**2), np.sum(reference * artifact), np.sum(artifact**2)])
        self.sums[point] = self.sums.get(point, 0) + sums

    def dead(self, point: str) -> bool:
        """Whether the reference is exactly zero at `point` on every image, so that no ratio to it exists."""
        return not self.sums[point][0] > 0

    def nsr(self, point: str) -> float:
        signal, noise = self.sums[point][:2]
        return float(noise / signal) if signal > 0 else math.inf

    def sqnr_db(self, point: str) -> float:
        return _db(self.nsr(point))

    def cosine(self, point: str) -> float:
        signal, _, dot, power = self.sums[point]
        return float(dot / math.sqrt(signal * power)) if signal * power > 0 else 0.0


def _db(ratio: float) -> float:
    if ratio <= 0:
        return EXACT_DB
    return min(EXACT_DB, -10 * math.log10(ratio)) if math.isfinite(ratio) else -math.inf
