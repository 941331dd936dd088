"""Optional backends: import them lazily, and say which extra installs a missing one."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from types import ModuleType

from edgekit.errors import MissingBackendError

# Modules whose pip distribution is installed with --no-deps against constraints.txt.
NO_DEPS = {"onnx2tf": "onnx2tf"}


# Backends no extra can install, with where they come from.
ELSEWHERE = {"tensorrt": "pip install 'edgekit[tensorrt]' on an x86 NVIDIA GPU machine (pip fetches NVIDIA's libraries "
                         "from NVIDIA's index); on a Jetson it comes with JetPack, never from pip",
             "torch2trt": "torch2trt is not on PyPI: install it from https://github.com/NVIDIA-AI-IOT/torch2trt "
                          "(python setup.py install) beside TensorRT"}


def install_hint(module: str, extra: str) -> str:
    """The command that installs the backend providing `module`."""
    if module in ELSEWHERE:
        return ELSEWHERE[module]
    if module in NO_DEPS:
        return f"pip install --no-deps -c constraints.txt {NO_DEPS[module]} (after: pip install 'edgekit[{extra}]')"
    return f"pip install 'edgekit[{extra}]'"


def missing(module: str) -> bool:
    """True when `module` cannot be found (without importing it)."""
    return importlib.util.find_spec(module) is None


def require(module: str, extra: str) -> ModuleType:
    """Imports an optional backend, or raises MissingBackendError naming the extra to install."""
    if missing(module):
        raise MissingBackendError(f"{module} is not installed. Install it with: {install_hint(module, extra)}")
    return importlib.import_module(module)


def version(distribution: str) -> str | None:
    """Installed version of a distribution, or None."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
