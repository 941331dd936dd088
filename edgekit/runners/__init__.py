"""One runner per runtime, chosen by the artifact's file suffix."""

from __future__ import annotations

from pathlib import Path

from edgekit.contract import Contract
from edgekit.errors import InvalidSpecError
from edgekit.runners.base import Runner

# suffix -> (module, class); imported on use so no backend loads before it is needed.
RUNNERS = {
    ".pt": ("edgekit.runners.torch_runner", "TorchScriptRunner"),
    ".ptl": ("edgekit.runners.torch_runner", "LiteInterpreterRunner"),
    ".onnx": ("edgekit.runners.onnx_runner", "OnnxRuntimeRunner"),
    ".tflite": ("edgekit.runners.tflite_runner", "TFLiteRunner"),
    ".engine": ("edgekit.runners.tensorrt_runner", "TensorRTRunner"),
    ".xml": ("edgekit.runners.openvino_runner", "OpenVINORunner"),
    ".pte": ("edgekit.runners.executorch_runner", "ExecuTorchRunner"),
}


def runner_for(path: str | Path, contract: Contract, **options) -> Runner:
    """The runner for an artifact file, by its suffix."""
    import importlib

    suffix = Path(path).suffix
    if suffix not in RUNNERS:
        raise InvalidSpecError(f"no runner for {suffix!r} files; known: {', '.join(RUNNERS)}")
    module, cls = RUNNERS[suffix]
    return getattr(importlib.import_module(module), cls)(path, contract, **options)


__all__ = ["RUNNERS", "Runner", "runner_for"]
