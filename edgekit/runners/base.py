"""The runner interface: every runtime behind activate, infer and deactivate."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edgekit.contract import Contract


MAX_BATCH = 16


def fixed_batches(inputs: np.ndarray, size: int) -> Iterator[tuple[np.ndarray, int]]:
    """`inputs` in groups of exactly `size`, each with its count of real inputs: the last group is filled up with
    copies of the last input, whose outputs the caller drops (`output[:count]`)."""
    for start in range(0, len(inputs), size):
        group = inputs[start:start + size]
        count = len(group)
        if count < size:
            group = np.concatenate([group, np.repeat(group[-1:], size - count, axis=0)])
        yield group, count


class Runner(ABC):
    """Runs one artifact. Callers feed normalised float32 NCHW batches and get float32 logits.

    Layout changes, integer quantization of inputs and outputs, and fixed batch sizes are the
    runner's business, never the caller's. Use as a context manager:

        with OnnxRuntimeRunner(path, contract) as runner:
            logits = runner.infer(batch)
    """

    name = "runner"
    # The largest batch one call takes when the contract's batch is dynamic (an engine's profile may lower it).
    max_batch = MAX_BATCH

    def __init__(self, path: str | Path, contract: Contract, threads: int | None = None) -> None:
        self.path = Path(path)
        self.contract = contract
        self.threads = threads
        self.active = False

    def activate(self) -> None:
        """Loads the artifact into its runtime."""
        self._activate()
        self.active = True

    def deactivate(self) -> None:
        """Releases the runtime's resources."""
        self._deactivate()
        self.active = False

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Logits [N, classes] for a normalised float32 NCHW batch [N, 3, H, W]."""
        if not self.active:
            raise RuntimeError(f"{self.name}: call activate() (or use 'with') before infer()")
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        fixed = self.contract.batch
        if fixed is None:
            step = self.max_batch
            return np.concatenate([self._infer(batch[i:i + step]) for i in range(0, len(batch), step)])
        return np.concatenate([self._infer(group)[:count] for group, count in fixed_batches(batch, fixed)])

    def __enter__(self) -> Runner:
        self.activate()
        return self

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    @abstractmethod
    def _activate(self) -> None: ...

    @abstractmethod
    def _infer(self, batch: np.ndarray) -> np.ndarray: ...

    def _deactivate(self) -> None:
        pass

    def to_layout(self, batch: np.ndarray) -> np.ndarray:
        """NCHW to the contract's layout (NHWC is a transpose)."""
        if self.contract.layout == "NHWC":
            return np.ascontiguousarray(batch.transpose(0, 2, 3, 1))
        return batch


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype: str) -> np.ndarray:
    """Float to integer with the tensor's affine parameters, rounded and clipped."""
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero_point, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Integer back to float32."""
    return ((q.astype(np.float32) - zero_point) * scale).astype(np.float32)
