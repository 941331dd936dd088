"""ExecuTorch's runtime (`executorch.runtime`), with the XNNPACK backend its pip wheel links."""

from __future__ import annotations

import warnings

import numpy as np

from edgekit.backends import missing, require
from edgekit.errors import MissingBackendError
from edgekit.runners.base import Runner

BACKEND = "XnnpackBackend"


class ExecuTorchRunner(Runner):
    """A `.pte` program's `forward` method on the CPU.

    The pip wheel's runtime bindings link libtorch and take torch tensors, so this runner needs
    PyTorch too. (executorch-numpy-runtime, the torch-free alternative, is not used: it needs
    Python 3.12+ and runs only `.pte` files from ExecuTorch 1.3.1.)
    """

    name = "executorch"

    def _activate(self) -> None:
        if missing("torch"):
            raise MissingBackendError("ExecuTorch's Python runtime needs PyTorch (its bindings link libtorch). "
                                      "Install it with: pip install 'edgekit[executorch]'")
        import torch

        self.torch = torch
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the bindings warn that their API is experimental on every import
            runtime_module = require("executorch.runtime", extra="executorch")
            from executorch.extension.pybindings import portable_lib
        runtime = runtime_module.Runtime.get()
        if not runtime.backend_registry.is_available(BACKEND):
            raise MissingBackendError(f"this ExecuTorch build has no {BACKEND}; install the PyPI wheel: "
                                      "pip install 'edgekit[executorch]'")
        if self.threads:
            portable_lib._unsafe_reset_threadpool(self.threads)
        self.method = runtime.load_program(self.path).load_method("forward")

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        outputs = self.method.execute([self.torch.from_numpy(self.to_layout(batch))])
        return outputs[0].numpy().astype(np.float32)

    def _deactivate(self) -> None:
        self.method = None
