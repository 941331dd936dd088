"""Channel shuffles of a QDQ ONNX graph written as Gathers, so that ONNX Runtime keeps its int8 layout.

A channel shuffle (ShuffleNetV2's `Reshape [N, g, C/g, H, W] -> Transpose [0, 2, 1, 3, 4] -> Reshape
[N, C, H, W]`, and the `Slice`s that split its output) only moves whole channels. ONNX Runtime runs
int8 convolutions in NHWC and cannot carry that layout through a 5-D Transpose, so it converts
back and forth around every shuffle: shufflenet_v2_x1_0's int8 file ran 47 layout Transposes. A
`Gather` on the channel axis computes the same values with 13 fewer (the Splits go too), and its
int8 file ran 1.2x faster (see the README's x86 section for the figures).

The rewrite is exact or not made: a chain is replaced only when every operator in it moves data
(Reshape, Transpose, Slice), every QuantizeLinear/DequantizeLinear pair in it has the scale and
zero point of the chain's input (so it rounds nothing), and the chain, run on a tensor that numbers
its own elements, turns out to take whole channels and nothing else.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

_MOVES = ("Reshape", "Transpose", "Slice")


def shuffles_as_gathers(path: Path) -> int:
    """Rewrites, in place, each channel shuffle of a QDQ model as Gathers on the channel axis.

    Args:
        path: an ONNX file, quantized (QDQ) or not; a graph without a shuffle is left untouched.

    Returns:
        How many shuffles were rewritten (the manifest records it as `channel_shuffles_as_gathers`).
    """
    import onnx

    loaded = onnx.load(str(path))
    model = onnx.shape_inference.infer_shapes(loaded)
    graph = _Graph(model.graph)
    rewrites, removed = [], set()
    for node in model.graph.node:
        rewrite = graph.rewrite_from(node) if node.op_type == "DequantizeLinear" and id(node) not in removed else None
        if rewrite is not None:
            rewrites.append(rewrite)
            removed |= {id(moved) for moved in rewrite["removed"]}
    if not rewrites:
        return 0
    first = {id(rewrite["removed"][0]): rewrite["gathers"] for rewrite in rewrites}
    nodes = []
    for node in model.graph.node:
        nodes += first.get(id(node), [])
        if id(node) not in removed:
            nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(index for rewrite in rewrites for index in rewrite["indices"])
    del model.graph.value_info[:]  # inferred above; keep only what the file had, for tensors that still exist
    produced = {name for node in model.graph.node for name in node.output}
    model.graph.value_info.extend(info for info in loaded.graph.value_info if info.name in produced)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return len(rewrites)


class _Graph:
    """Lookups over one graph: producers, consumers, constants, shapes."""

    def __init__(self, graph) -> None:
        from onnx import numpy_helper

        self.graph = graph
        self.constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                self.constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        self.consumers: dict[str, list] = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.shapes = {v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
                       for v in [*graph.value_info, *graph.input, *graph.output]}

    def rewrite_from(self, dequantize) -> dict | None:
        """The Gathers that replace the data moves after `dequantize`, if they form an exact channel shuffle."""
        start = dequantize.output[0]
        shape = self.shapes.get(start)
        if not shape or len(shape) != 4 or None in shape[1:] or not self._moves_follow(start):
            return None
        shape = [2 if shape[0] is None else shape[0], *shape[1:]]  # a dynamic batch: checked on two images
        params = self._params(dequantize)
        removed, ends = [], []  # ends: (tensor that replaces the chain's output, its channel order)
        coded = np.arange(np.prod(shape)).reshape(shape)
        if not self._walk(start, coded, params, removed, ends) or not any(n.op_type == "Transpose" for n in removed):
            return None
        outputs = {output.name for output in self.graph.output}
        if any(name in outputs for node in removed for name in node.output if name not in dict(ends)):
            return None
        from onnx import helper, numpy_helper

        gathers, indices = [], []
        for output, values in ends:
            channels = _channels_of(values, shape)
            if channels is None:
                return None
            name = f"{output}_channels"
            indices.append(numpy_helper.from_array(channels, name))
            gathers.append(helper.make_node("Gather", [start, name], [output], axis=1, name=f"{output}_gather"))
        return {"removed": removed, "gathers": gathers, "indices": indices}

    def _moves_follow(self, name: str) -> bool:
        users = self.consumers.get(name, [])
        return bool(users) and all(user.op_type in _MOVES for user in users) \
            and (len(users) == 1 or all(user.op_type == "Slice" for user in users))

    def _walk(self, name: str, values: np.ndarray, params, removed: list, ends: list) -> bool:
        """Follows data moves, and rounding-free Q/DQ pairs between them, from `name`; False on anything else.

        A chain ends at the output of a move whose consumers do something else (a QuantizeLinear
        before a convolution, say): the Gather that replaces the chain produces that tensor, so what
        reads it is unchanged.
        """
        users = self.consumers.get(name, [])
        if self._moves_follow(name):
            for user in users:
                moved = self._move(user, values)
                if moved is None:
                    return False
                removed.append(user)
                if not self._walk(user.output[0], moved, params, removed, ends):
                    return False
            return True
        quantize = users[0] if len(users) == 1 and users[0].op_type == "QuantizeLinear" else None
        dequantizes = self.consumers.get(quantize.output[0], []) if quantize is not None else []
        if dequantizes and self._params(quantize) == params and all(
                node.op_type == "DequantizeLinear" and self._params(node) == params
                and self._moves_follow(node.output[0]) for node in dequantizes):
            removed += [quantize, *dequantizes]
            return all(self._walk(node.output[0], values, params, removed, ends) for node in dequantizes)
        ends.append((name, values))
        return True

    def _move(self, node, values: np.ndarray) -> np.ndarray | None:
        """`values` moved as `node` moves data; None when its parameters are not constants."""
        if node.op_type == "Transpose":
            return values.transpose([a.ints for a in node.attribute if a.name == "perm"][0])
        if node.op_type == "Reshape":
            shape = self.constants.get(node.input[1])
            if shape is None or any(a.name == "allowzero" and a.i for a in node.attribute):
                return None
            try:
                return values.reshape([values.shape[i] if d == 0 else d for i, d in enumerate(shape.tolist())])
            except ValueError:  # a fixed size that does not fit this batch
                return None
        starts, ends, axes, steps = (self.constants.get(n) if n else None
                                     for n in [*node.input[1:], "", "", ""][:4])
        if starts is None or ends is None or (len(node.input) > 3 and node.input[3] and axes is None) \
                or (len(node.input) > 4 and node.input[4] and steps is None):
            return None
        axes = range(len(starts)) if axes is None else axes
        steps = [1] * len(starts) if steps is None else steps
        index = [slice(None)] * values.ndim
        for start, end, axis, step in zip(starts, ends, axes, steps):
            index[int(axis)] = slice(int(start), int(end), int(step))
        return values[tuple(index)]

    def _params(self, node) -> tuple:
        """A Q/DQ node's scale and zero point, as comparable values."""
        scale = self.constants.get(node.input[1])
        zero = self.constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if scale is None:
            return (node.name,)  # not a constant: matches nothing but itself
        return (scale.tobytes(), None if zero is None else (zero.dtype.str, zero.tobytes()),
                tuple((a.name, a.i) for a in node.attribute))


def _channels_of(values: np.ndarray, shape: list[int]) -> np.ndarray | None:
    """The channel order if `values` (element numbers of a [N, C, H, W] tensor) is whole channels taken in order."""
    batch, _, height, width = shape
    if values.ndim != 4 or values.shape[0] != batch or values.shape[2:] != (height, width):
        return None
    plane = height * width
    channels = values[0, :, 0, 0] // plane
    if channels.max() >= shape[1]:
        return None
    expected = (np.arange(batch)[:, None, None, None] * shape[1] + channels[None, :, None, None]) * plane \
        + np.arange(plane).reshape(1, 1, height, width)
    return channels.astype(np.int64) if np.array_equal(values, expected) else None

