"""TFLite artifacts: the interpreter keeps every intermediate tensor (`experimental_preserve_all_tensors`).

The built-in reference kernels run, not XNNPACK: a delegate hides the tensors inside its partition.
onnx2tf names TFLite tensors after the TensorFlow ops it emitted ('model_1/tf.nn.relu6_3/Relu6;...'),
which carry no ONNX or PyTorch name, so tensors are paired with PyTorch modules by shape and value
(`layers.match`). Integer tensors are dequantized; NHWC tensors are transposed to NCHW.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.backends import require
from edgekit.diagnose.layers import Tensor
from edgekit.runners.base import quantize

SKIP = {"RESHAPE", "SQUEEZE", "PAD", "PADV2", "TRANSPOSE", "DELEGATE"}


class TFLiteTap:
    """Runs a `.tflite` artifact and reads back every op's output as float32 NCHW."""

    def __init__(self, path: Path, contract, threads: int | None = None) -> None:
        litert = require("ai_edge_litert.interpreter", extra="pi")
        self.interpreter = litert.Interpreter(
            model_path=str(path), num_threads=threads, experimental_preserve_all_tensors=True,
            experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        self.interpreter.allocate_tensors()
        self.contract = contract
        self.input = self.interpreter.get_input_details()[0]
        details = {t["index"]: t for t in self.interpreter.get_tensor_details()}
        self._details: dict[str, dict] = {}
        self.tensors: list[Tensor] = []
        for op in self.interpreter._get_ops_details():  # the op list; the public API lists tensors only
            if op["op_name"] in SKIP:
                continue
            for index in op["outputs"]:
                detail = details[index]
                self._details[detail["name"]] = detail
                self.tensors.append(Tensor(detail["name"], _nchw_shape(tuple(detail["shape"][1:])), op["op_name"]))

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Every op output for one batch (normalised NCHW, in the contract's channel order)."""
        feed = self.contract.pixels_of(batch) if self.contract.normalization == "graph" else batch
        feed = feed.transpose(0, 2, 3, 1).reshape(self.input["shape"])
        scale, zero_point = self.input["quantization"]
        if np.issubdtype(self.input["dtype"], np.integer):
            feed = quantize(feed, scale, zero_point, np.dtype(self.input["dtype"]).name)
        self.interpreter.set_tensor(self.input["index"], feed.astype(self.input["dtype"]))
        self.interpreter.invoke()
        values = {name: _float_nchw(self.interpreter.get_tensor(detail["index"]), detail)
                  for name, detail in self._details.items()}
        return {name: value for name, value in values.items() if value is not None}


def _nchw_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[-1], *shape[:-1]) if len(shape) == 3 else shape


def _float_nchw(value: np.ndarray, detail: dict) -> np.ndarray | None:
    if np.issubdtype(value.dtype, np.integer):
        scale, zero_point = detail["quantization"]
        if not scale:
            return None
        value = (value.astype(np.float32) - zero_point) * np.float32(scale)
    value = value.astype(np.float32)
    return value.transpose(0, 3, 1, 2) if value.ndim == 4 else value
