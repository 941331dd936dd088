"""ONNX Runtime on the CPU."""

from __future__ import annotations

import numpy as np

from edgekit.backends import require
from edgekit.runners.base import Runner


class OnnxRuntimeRunner(Runner):
    """An `.onnx` file in ONNX Runtime's CPU provider."""

    name = "onnxruntime"

    def _activate(self) -> None:
        ort = require("onnxruntime", extra="onnx")
        options = ort.SessionOptions()
        if self.threads:
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        feed = self.to_layout(batch)
        return self.session.run(None, {self.input_name: feed})[0].astype(np.float32)

    def _deactivate(self) -> None:
        self.session = None
