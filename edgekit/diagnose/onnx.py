"""ONNX artifacts: every intermediate tensor made a graph output, run in ONNX Runtime.

In a QDQ model the value the next op reads is the DequantizeLinear output; that one stands for its
tensor. Names from torch.onnx carry the PyTorch module path ('/features/features.3/conv/conv.0/...').
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.backends import require
from edgekit.diagnose.layers import Tensor, module_path

DEQUANTIZED = "_DequantizeLinear_Output"
SKIP = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "Constant", "Shape", "Reshape", "Flatten"}


class OnnxTap:
    """Runs an `.onnx` artifact with its intermediate tensors as extra outputs."""

    def __init__(self, path: Path, contract, threads: int | None = None) -> None:
        onnx = require("onnx", extra="onnx")
        ort = require("onnxruntime", extra="onnx")
        model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
        self.contract = contract
        self.tensors = _tensors(model)
        known = {output.name for output in model.graph.output}
        model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(t.name) for t in self.tensors if t.name not in known)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        self.session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.names = [output.name for output in self.session.get_outputs()]

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Every tapped tensor for one batch (normalised NCHW, in the contract's channel order)."""
        values = self.session.run(None, {self.input_name: batch.astype(np.float32)})
        return {name: value.astype(np.float32) for name, value in zip(self.names, values)
                if np.issubdtype(value.dtype, np.floating)}


def _tensors(model) -> list[Tensor]:
    shapes = {info.name: [d.dim_value for d in info.type.tensor_type.shape.dim]
              for info in list(model.graph.value_info) + list(model.graph.output)}
    dequantized = {node.input[0].removesuffix("_QuantizeLinear_Output"): node.output[0]
                   for node in model.graph.node if node.op_type == "DequantizeLinear"}
    tensors = []
    graph_input = model.graph.input[0].name
    if graph_input + DEQUANTIZED in shapes or graph_input in dequantized:
        name = dequantized.get(graph_input, graph_input + DEQUANTIZED)
        tensors.append(Tensor(name, tuple(shapes.get(name, [0])[1:]), "QuantizeLinear", "input"))
    for node in model.graph.node:
        if node.op_type in SKIP:
            continue
        for output in node.output:
            shown = dequantized.get(output, output)
            shape = shapes.get(shown) or shapes.get(output)
            if shape:
                tensors.append(Tensor(shown, tuple(shape[1:]), node.op_type, module_path(output)))
    return tensors
