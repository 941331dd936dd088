"""The PyTorch side of a diagnosis: every module's output (a "point"), and which artifact tensor shows it.

A point is one distinct tensor that a module returned during the forward pass, named after the
innermost module that returned it (a Sequential that returns its last child's output adds no
point). A convolution whose output only a BatchNorm reads is folded into that BatchNorm, as every
exporter folds it: the artifact's convolution output is compared with the BatchNorm's output.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

INPUT = "input"
# An artifact tensor matched by value must resemble its point at least this much (cosine, first batch).
MIN_COSINE = 0.5


@dataclass
class Point:
    """One module output of the reference: its name, module kind(s), shape (NCHW, no batch) and inputs."""

    name: str
    kind: str
    shape: tuple[int, ...]
    inputs: list[str] = field(default_factory=list)
    folds: str | None = None  # the BatchNorm point this convolution's output is compared through


class Reference:
    """Forward hooks on every module of `model`; `run(batch)` returns each point's output as NumPy (NCHW)."""

    def __init__(self, model) -> None:
        for module in model.modules():
            if getattr(module, "inplace", False):
                module.inplace = False  # an in-place activation would overwrite the output before it
        self.model = model.eval()
        self.points: dict[str, Point] = {}
        self._outputs: dict[int, tuple[str, object]] = {}
        self._entered: dict[str, str] = {}

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """The output of every point for `batch` (normalised NCHW float32)."""
        import torch

        self._outputs = {}
        modules = [(name or "model", module) for name, module in self.model.named_modules()]
        handles = [module.register_forward_pre_hook(self._enter(name)) for name, module in modules]
        handles += [module.register_forward_hook(self._hook(name)) for name, module in modules]
        try:
            with torch.no_grad():
                x = torch.from_numpy(np.ascontiguousarray(batch))
                self._outputs[id(x)] = (INPUT, x)
                self.points.setdefault(INPUT, Point(INPUT, "input", tuple(x.shape[1:])))
                self.model(x)
        finally:
            for handle in handles:
                handle.remove()
        self._fold_batchnorms()
        values = {name: tensor.float().numpy() for name, tensor in self._outputs.values()}
        self._outputs = {}
        return values

    def _enter(self, name: str):
        def enter(module, args) -> None:
            self._entered[name] = next(reversed(self._outputs.values()))[0]

        return enter

    def _hook(self, name: str):
        import torch

        def record(module, args, output) -> None:
            if not isinstance(output, torch.Tensor) or id(output) in self._outputs:
                return
            tensors = [a for a in args if isinstance(a, torch.Tensor)]
            inputs = [self._outputs[id(a)][0] for a in tensors if id(a) in self._outputs]
            if len(inputs) < len(tensors):  # made by a function, not a module: the last point before this module
                inputs.append(self._entered[name])
            self._outputs[id(output)] = (name, output)
            self.points.setdefault(name, Point(name, type(module).__name__, tuple(output.shape[1:]), inputs))

        return record

    def _fold_batchnorms(self) -> None:
        readers: dict[str, list[str]] = {}
        for point in self.points.values():
            for source in point.inputs:
                readers.setdefault(source, []).append(point.name)
        for point in self.points.values():
            reads = readers.get(point.name, [])
            if point.kind.startswith("Conv") and len(reads) == 1 and self.points[reads[0]].kind.startswith("BatchNorm"):
                point.folds = reads[0]

    def resolve(self, module: str) -> str | None:
        """The point an artifact tensor produced inside `module` shows: the module's own, or its folded BatchNorm."""
        point = self.points.get(module)
        if point is None:
            return None
        return point.folds or point.name

    def span(self, name: str, matched: set[str]) -> list[str]:
        """The modules between `name` and the matched points it reads: what one artifact op computes."""
        chain, todo = [], [name]
        while todo:
            current = todo.pop()
            chain.append(current)
            todo.extend(i for i in self.points[current].inputs if i not in matched and i != INPUT and i not in chain)
        return sorted(chain, key=list(self.points).index)


def module_path(onnx_name: str) -> str | None:
    """The PyTorch module path in a torch.onnx name: '/features/features.3/conv/conv.0/Conv_output_0' -> 'features.3.conv.0'."""
    from edgekit.quantization.layers import module_of

    return module_of(onnx_name) or None


@dataclass
class Tensor:
    """An artifact tensor that can be read after each run: name, NCHW shape without batch, op, module hint."""

    name: str
    shape: tuple[int, ...]
    op: str
    module: str | None = None


@dataclass
class Match:
    """An artifact tensor and the reference point it shows, and how they were paired."""

    tensor: Tensor
    point: str
    by: str  # "name" or "value"


def match(tensors: list[Tensor], reference: Reference, ref: dict[str, np.ndarray],
          art: dict[str, np.ndarray]) -> tuple[list[Match], list[Tensor]]:
    """Pairs artifact tensors with points: by module name where the artifact carries one, else by shape and value.

    A point shown by several tensors keeps the last one (the value the next op reads). Returns the
    matches in network order and the tensors left unmatched.
    """
    chosen: dict[str, Match] = {}
    unmatched: list[Tensor] = []
    for tensor in tensors:
        if tensor.name not in art:
            continue
        point = reference.resolve(tensor.module) if tensor.module else None
        if point is not None and _same_shape(reference.points[point].shape, tensor.shape):
            chosen[point] = Match(tensor, point, "name")
            continue
        best = _closest(tensor, reference, ref, art[tensor.name])
        if best is None:
            unmatched.append(tensor)
        elif best not in chosen or chosen[best].by == "value":
            chosen[best] = Match(tensor, best, "value")
    order = list(reference.points)
    return sorted(chosen.values(), key=lambda m: order.index(m.point)), unmatched


def _closest(tensor: Tensor, reference: Reference, ref: dict[str, np.ndarray], value: np.ndarray) -> str | None:
    best, best_cosine = None, MIN_COSINE
    for point in reference.points.values():
        if not _same_shape(point.shape, tensor.shape) or point.folds:
            continue
        cosine = _cosine(ref[point.name], value)
        if cosine > best_cosine:
            best, best_cosine = point.name, cosine
    return best


def _same_shape(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    """Equal once size-1 axes are dropped: a pooled (C, 1, 1) tensor is the flattened (C,) one."""
    return [n for n in a if n != 1] == [n for n in b if n != 1]


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    denominator = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denominator) if denominator > 0 else 0.0
