"""The CUDA device under TensorRT: what it is, and device memory through torch or cuda-python.

TensorRT needs device buffers and a stream. On a workstation torch with CUDA is usually there;
on a Jetson image without PyTorch, cuda-python is. Both are wrapped behind `DeviceMemory`, so
the engine builder's calibrator and the engine runner do not care which one is installed.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

import numpy as np

from edgekit.errors import MissingBackendError

NO_MEMORY_BACKEND = ("neither torch with CUDA nor cuda-python is installed; TensorRT needs one for device buffers. "
                     "Install: pip install 'edgekit[jetson]' (cuda-python) or a CUDA build of torch")


def _cudart():
    """cuda-python's runtime module: `cuda.bindings.runtime` (12.6 and later) or `cuda.cudart` (older)."""
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            if importlib.util.find_spec(name.rsplit(".", 1)[0]) is not None:
                return importlib.import_module(name)
        except ImportError:
            continue
    return None


def _torch_cuda():
    """torch, when it is installed and sees a CUDA device."""
    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    return torch if torch.cuda.is_available() else None


def _check(cudart, result: tuple) -> Any:
    error, *values = result
    if error != cudart.cudaError_t.cudaSuccess:
        message = cudart.cudaGetErrorString(error)[1]
        raise RuntimeError(f"CUDA error {error}: {message.decode() if isinstance(message, bytes) else message}")
    return values[0] if len(values) == 1 else values


def unavailable_reason() -> str | None:
    """Why no CUDA device can be used here (no device, or nothing to reach it with), or None."""
    torch = _torch_cuda()
    if torch is not None:
        return None
    cudart = _cudart()
    if cudart is None:
        if importlib.util.find_spec("torch") is not None:
            return "no CUDA GPU is visible to torch (torch.cuda.is_available() is False), and cuda-python is not installed"
        return NO_MEMORY_BACKEND
    error, count = cudart.cudaGetDeviceCount()
    if error != cudart.cudaError_t.cudaSuccess or count == 0:
        return f"no CUDA GPU is visible (cudaGetDeviceCount: {error}, {count} devices)"
    return None


def device_info(tensorrt_version: str) -> dict[str, str]:
    """GPU name, compute capability, CUDA runtime and TensorRT versions: what an engine is tied to.

    The CUDA version is the one torch or cuda-python was built with, which may differ from the one
    TensorRT links; it is recorded for people, and not compared when an engine is loaded.
    """
    torch = _torch_cuda()
    if torch is not None:
        major, minor = torch.cuda.get_device_capability(0)
        name, cuda = torch.cuda.get_device_name(0), torch.version.cuda
    else:
        cudart = _cudart()
        if cudart is None:
            raise MissingBackendError(NO_MEMORY_BACKEND)
        properties = _check(cudart, cudart.cudaGetDeviceProperties(0))
        raw = properties.name
        name = (raw.decode() if isinstance(raw, bytes) else str(raw)).rstrip("\x00")
        major, minor = properties.major, properties.minor
        version = _check(cudart, cudart.cudaRuntimeGetVersion())
        cuda = f"{version // 1000}.{version % 1000 // 10}"
    return {"gpu": name, "compute_capability": f"{major}.{minor}", "cuda": str(cuda), "tensorrt": tensorrt_version}


def compatibility_problem(built_on: dict[str, str] | None, here: dict[str, str]) -> str | None:
    """Why an engine built on `built_on` must not run `here` (another GPU or TensorRT version), or None.

    TensorRT plans are specific to the GPU model and the exact TensorRT version that built them.
    A foreign plan either fails to deserialize with an opaque message or, worse, loads and runs
    kernels tuned for another device, so edgekit refuses it by name.
    """
    if not built_on:
        return "the manifest does not record the GPU and TensorRT version this engine was built for"
    problems = [f"{label} {built_on.get(key)!r} (here: {here.get(key)!r})"
                for key, label in (("gpu", "GPU"), ("compute_capability", "compute capability"),
                                   ("tensorrt", "TensorRT"))
                if built_on.get(key) != here.get(key)]
    if not problems:
        return None
    return ("this engine was built for " + ", ".join(problems) + ". TensorRT engines run only on the GPU model and "
            "TensorRT version that built them; rebuild it here from the ONNX artifact with "
            "'edgekit build-engine ONNX_ARTIFACT_DIR --fp16' (or --int8)")


class DeviceMemory:
    """Device buffers and one stream, through torch CUDA tensors or cuda-python."""

    def __init__(self) -> None:
        self.torch = _torch_cuda()
        self.cudart = None if self.torch is not None else _cudart()
        if self.torch is None and self.cudart is None:
            raise MissingBackendError(NO_MEMORY_BACKEND)
        self.backend = "torch" if self.torch is not None else "cuda-python"
        if self.torch is not None:
            self._stream = self.torch.cuda.Stream()
        else:
            self._stream = _check(self.cudart, self.cudart.cudaStreamCreate())

    @property
    def stream(self) -> int:
        """The stream handle TensorRT's `execute_async_v3` takes."""
        if self.torch is not None:
            return self._stream.cuda_stream
        try:  # cuda-bindings 13 deprecates int(cudaStream_t) in favour of this helper
            from cuda.bindings.utils import get_cuda_native_handle
        except ImportError:
            return int(self._stream)
        return int(get_cuda_native_handle(self._stream))

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> DeviceBuffer:
        return DeviceBuffer(self, tuple(int(d) for d in shape), np.dtype(dtype))

    def synchronize(self) -> None:
        if self.torch is not None:
            self._stream.synchronize()
        else:
            _check(self.cudart, self.cudart.cudaStreamSynchronize(self._stream))

    def close(self) -> None:
        if self.cudart is not None and self._stream is not None:
            self.cudart.cudaStreamDestroy(self._stream)
        self._stream = None


class DeviceBuffer:
    """One device allocation of a fixed shape and dtype."""

    def __init__(self, memory: DeviceMemory, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.memory, self.shape, self.dtype = memory, shape, dtype
        self.nbytes = int(np.prod(shape)) * dtype.itemsize
        if memory.torch is not None:
            torch = memory.torch
            self.tensor = torch.empty(shape, dtype=getattr(torch, dtype.name), device="cuda")
            self.ptr = self.tensor.data_ptr()
        else:
            self.tensor = None
            self.ptr = int(_check(memory.cudart, memory.cudart.cudaMalloc(self.nbytes)))

    def write(self, array: np.ndarray) -> None:
        """Copies a host array of this buffer's shape and dtype to the device, ordered on the stream."""
        array = np.ascontiguousarray(array, dtype=self.dtype)
        if array.shape != self.shape:
            raise ValueError(f"device buffer holds {self.shape}, got {array.shape}")
        memory = self.memory
        if memory.torch is not None:
            with memory.torch.cuda.stream(memory._stream):
                self.tensor.copy_(memory.torch.from_numpy(array))
        else:
            cudart = memory.cudart
            _check(cudart, cudart.cudaMemcpyAsync(self.ptr, array.ctypes.data, self.nbytes,
                                                  cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, memory._stream))
            memory.synchronize()

    def read(self) -> np.ndarray:
        """The buffer's contents on the host, after the stream's work so far."""
        memory = self.memory
        memory.synchronize()
        if memory.torch is not None:
            return self.tensor.cpu().numpy()
        host = np.empty(self.shape, dtype=self.dtype)
        _check(memory.cudart, memory.cudart.cudaMemcpy(host.ctypes.data, self.ptr, self.nbytes,
                                                       memory.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost))
        return host

    def free(self) -> None:
        if self.tensor is None and self.ptr:
            self.memory.cudart.cudaFree(self.ptr)
        self.tensor, self.ptr = None, 0
