"""PyTorch runners: eager (the reference), TorchScript `.pt`, and lite-interpreter `.ptl`."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edgekit.contract import Contract
from edgekit.runners.base import Runner


class TorchRunner(Runner):
    """Eager PyTorch on an in-memory module: the reference every artifact is compared with."""

    name = "pytorch"

    def __init__(self, model: nn.Module, contract: Contract, threads: int | None = None) -> None:
        super().__init__("<memory>", contract.replace(batch=None), threads)
        self.model = model

    def _activate(self) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)
        self.model.eval()

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.model(torch.from_numpy(batch)).float().numpy()


class TorchScriptRunner(Runner):
    """A TorchScript file saved with `torch.jit.save`."""

    name = "torchscript"

    def _activate(self) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)
        self.module = torch.jit.load(str(self.path), map_location="cpu").eval()

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.module(torch.from_numpy(batch)).float().numpy()

    def _deactivate(self) -> None:
        self.module = None


class LiteInterpreterRunner(TorchScriptRunner):
    """A mobile `.ptl` file, run by the same lite interpreter as PyTorch Mobile."""

    name = "torchscript-lite"

    def _activate(self) -> None:
        from torch.jit.mobile import _load_for_lite_interpreter

        self.module = _load_for_lite_interpreter(str(self.path), map_location="cpu")

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.module(torch.from_numpy(batch)).float().numpy()
