"""OpenVINO on the CPU, at the inference precision the artifact's manifest records.

OpenVINO chooses how it computes when it compiles: on a CPU with bf16 instructions (AVX512-BF16,
AMX) its default is bf16, elsewhere f32. The precision is therefore part of an artifact's contract
(`contract.device["inference_precision"]`, what the verifier saw), and this runner asks for that
precision. A device that cannot compute in it (bf16 asked for on a CPU without bf16: OpenVINO falls
back to f32) runs anyway, and says so on stderr.
"""

from __future__ import annotations

import sys

import numpy as np

from edgekit.backends import require
from edgekit.runners.base import Runner

HINT = "INFERENCE_PRECISION_HINT"
PRECISIONS = ("f32", "bf16")


def recorded_precision(contract) -> str | None:
    """The inference precision an OpenVINO artifact was verified at, from its contract (None if unrecorded)."""
    return (contract.device or {}).get("inference_precision")


def compile_model(model, precision: str | None, threads: int | None = None):
    """Compiles an OpenVINO model (path or ov.Model) for the CPU; returns it and the precision it computes in."""
    ov = require("openvino", extra="openvino")
    config: dict[str, object] = {}
    if precision is not None:
        config[HINT] = precision
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    compiled = ov.Core().compile_model(model if isinstance(model, ov.Model) else str(model), "CPU", config)
    return compiled, compiled.get_property(HINT).get_type_name()


def device_info(precision: str) -> dict[str, str]:
    """What the contract records about the CPU that verified an artifact, and the precision it computed in."""
    ov = require("openvino", extra="openvino")
    core = ov.Core()
    return {"runtime": "openvino", "openvino": ov.get_version().split("-")[0],
            "cpu": str(core.get_property("CPU", "FULL_DEVICE_NAME")),
            "cpu_capabilities": " ".join(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")),
            "inference_precision": precision}


class OpenVINORunner(Runner):
    """An OpenVINO IR (`.xml` with its `.bin` beside it) on the CPU plugin."""

    name = "openvino"

    def _activate(self) -> None:
        wanted = recorded_precision(self.contract)
        if wanted is not None and wanted not in PRECISIONS:
            raise ValueError(f"{self.name}: the contract records inference precision {wanted!r}; "
                             f"known: {', '.join(PRECISIONS)}")
        self.compiled, self.precision = compile_model(self.path, wanted, self.threads)
        if wanted is None:
            _warn(f"{self.path.name}'s contract records no inference precision; OpenVINO computes in "
                  f"{self.precision} on this CPU")
        elif self.precision != wanted:
            recorded = self.contract.device or {}
            _warn(f"{self.path.name} was verified computing in {wanted} on {recorded.get('cpu', 'another CPU')}; "
                  f"this CPU computes it in {self.precision} (OpenVINO falls back when the CPU lacks {wanted}), "
                  f"so its outputs differ from the verified ones by {self.precision} rounding. Re-verify here with "
                  f"'edgekit verify' if that matters.")
        self.request = self.compiled.create_infer_request()
        self.output = self.compiled.output(0)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        result = self.request.infer({0: self.to_layout(batch)})
        return np.array(result[self.output], dtype=np.float32, copy=True)

    def _deactivate(self) -> None:
        self.request = self.compiled = None


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)
