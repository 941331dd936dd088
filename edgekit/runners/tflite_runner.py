"""The TFLite interpreter (ai_edge_litert), with XNNPACK on the CPU."""

from __future__ import annotations

import numpy as np

from edgekit.backends import require
from edgekit.runners.base import Runner, dequantize, quantize


class TFLiteRunner(Runner):
    """A `.tflite` file. Hides NHWC layout, in-graph normalisation and int8/uint8 input and output quantization."""

    name = "tflite"

    def _activate(self) -> None:
        litert = require("ai_edge_litert.interpreter", extra="pi")
        self.interpreter = litert.Interpreter(model_path=str(self.path), num_threads=self.threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        if self.contract.normalization == "graph":
            batch = self.contract.pixels_of(batch)
        # A contract that names the wrong layout is fed as the classic bug: reshaped, not transposed.
        feed = self.to_layout(batch).reshape(self.input["shape"])
        scale, zero_point = self.input["quantization"]
        if np.issubdtype(self.input["dtype"], np.integer):
            feed = quantize(feed, scale, zero_point, np.dtype(self.input["dtype"]).name)
        else:
            feed = feed.astype(self.input["dtype"])
        self.interpreter.set_tensor(self.input["index"], feed)
        self.interpreter.invoke()
        out = self.interpreter.get_tensor(self.output["index"])
        if np.issubdtype(out.dtype, np.integer):
            out_scale, out_zero = self.output["quantization"]
            return dequantize(out, out_scale, out_zero)
        return out.astype(np.float32)

    def _deactivate(self) -> None:
        self.interpreter = None
