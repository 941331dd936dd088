"""TensorRT engines on an NVIDIA GPU, with device buffers from torch CUDA or cuda-python."""

from __future__ import annotations

import numpy as np

from edgekit.backends import require
from edgekit.errors import EngineMismatchError
from edgekit.gpu import DeviceMemory, compatibility_problem, device_info
from edgekit.runners.base import Runner


class TensorRTRunner(Runner):
    """A serialized `.engine`. Refuses, by name, an engine built for another GPU or TensorRT version."""

    name = "tensorrt"

    def _activate(self) -> None:
        trt = require("tensorrt", extra="tensorrt")
        problem = compatibility_problem(self.contract.device, device_info(trt.__version__))
        if problem:
            raise EngineMismatchError(f"{self.path}: {problem}")
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise RuntimeError(f"TensorRT could not deserialize {self.path}; see its log above")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise RuntimeError(f"{self.path}: expected one input and one output tensor, found {inputs} and {outputs}")
        self.input_name, self.output_name = inputs[0], outputs[0]
        self.input_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.input_name)))
        self.output_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.output_name)))
        if self.engine.get_tensor_shape(self.input_name)[0] == -1:
            self.max_batch = int(self.engine.get_tensor_profile_shape(self.input_name, 0)[2][0])
        self.memory = DeviceMemory()
        self.buffers: dict[int, tuple] = {}

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        batch = self.to_layout(batch)
        if len(batch) not in self.buffers:
            self.context.set_input_shape(self.input_name, batch.shape)
            output_shape = tuple(self.context.get_tensor_shape(self.output_name))
            self.buffers[len(batch)] = (self.memory.empty(batch.shape, self.input_dtype),
                                        self.memory.empty(output_shape, self.output_dtype))
        source, target = self.buffers[len(batch)]
        self.context.set_input_shape(self.input_name, batch.shape)
        self.context.set_tensor_address(self.input_name, source.ptr)
        self.context.set_tensor_address(self.output_name, target.ptr)
        source.write(batch)
        if not self.context.execute_async_v3(self.memory.stream):
            raise RuntimeError(f"{self.path}: TensorRT execution failed")
        return target.read().astype(np.float32)

    def _deactivate(self) -> None:
        for buffers in getattr(self, "buffers", {}).values():
            for buffer in buffers:
                buffer.free()
        if getattr(self, "memory", None) is not None:
            self.memory.close()
        self.buffers, self.memory, self.context, self.engine, self.runtime = {}, None, None, None, None
