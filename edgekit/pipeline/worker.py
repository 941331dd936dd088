"""Runs one export step in a child process forked by the step server (see `forkserver`), or in a fresh
interpreter for steps that need one: `python -m edgekit.pipeline.worker REQUEST.json`.

Converters crash, hang and print; here they do it in a process of their own, whose output goes
to a log file and whose time is limited by the parent. When asked, the same process then
verifies what it wrote against the reference logits the parent saved, so sibling steps (three
TFLite variants of one SavedModel, say) convert and verify side by side.
"""

from __future__ import annotations

import ctypes
import importlib
import json
import os
import resource
import signal
import sys
import time
import traceback
from pathlib import Path

from edgekit.pipeline.spec import ExportSpec

PR_SET_PDEATHSIG = 1


def run(request: dict) -> dict:
    """Builds the step's input, calls its exporter, verifies the output if asked; returns the report."""
    spec = ExportSpec.from_dict(request["spec"])
    module, function = request["exporter"].split(":")
    exporter = getattr(importlib.import_module(f"edgekit.exporters.{module}"), function)
    if request["input"] == "model":
        from edgekit.models import create_model

        source = create_model(spec.model, weights=spec.weights_file, num_classes=spec.num_classes)
    else:
        source = Path(request["input"])
    started = time.perf_counter()
    result = exporter(source, spec, Path(request["output"])) or {}
    result["seconds"] = time.perf_counter() - started
    result["peak_rss_mb"] = peak_rss_mb()
    result["threads"] = _threads()
    if request.get("verify"):
        started = time.perf_counter()
        result["parity"] = _verify(Path(request["output"]), result, request["verify"])
        result["verify_seconds"] = time.perf_counter() - started
    return result


def _verify(output: Path, result: dict, request: dict) -> dict:
    import numpy as np

    from edgekit.contract import Contract
    from edgekit.parity import Probes, Tolerance, check
    from edgekit.pipeline.artifact import contract_with
    from edgekit.runners import runner_for

    contract = contract_with(Contract.from_dict(request["contract"]), result.get("contract", {}))
    probes = Probes.load(request["probes"])
    reference = np.load(request["reference"])
    runner = runner_for(output, contract, threads=request.get("threads"))
    return check(request["step"], runner, reference, probes, Tolerance(**request["tolerance"])).to_dict()


def _threads() -> int | None:
    """The threads this step computed with: PyTorch's pool where it was loaded, else what the parent allotted."""
    if "torch" in sys.modules:
        return sys.modules["torch"].get_num_threads()
    allotted = os.environ.get("OMP_NUM_THREADS", "")
    return int(allotted) if allotted.isdigit() else None


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM). A forked step's includes the pages it shares with the step
    server (the libraries it imported); ru_maxrss would also count its children's."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _die_with_parent(parent: int) -> None:
    """Asks Linux to kill this process when `parent`, the process that started it, dies, even by SIGKILL; exits at
    once if `parent` is already gone."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        os._exit(1)


def error_file(result: Path) -> Path:
    """Where a step that stopped on an edgekit error leaves its type and message for the parent."""
    return result.with_name(f"{result.name}.error")


def execute(request_file: Path) -> int:
    """Runs the step that `request_file` describes and writes its report where the request says.

    A step that stops on an edgekit error (a budget not met, a bad option found late) writes the error's type and
    message beside the report's path, so the parent raises the same typed error with its exit code; the traceback
    stays in the step's log.
    """
    from edgekit.errors import EdgekitError

    request = json.loads(request_file.read_text())
    try:
        result = run(request)
    except EdgekitError as error:
        traceback.print_stack()  # where the step ran from (the step server, or `python -m` for a fresh interpreter)
        traceback.print_exc()
        error_file(Path(request["result"])).write_text(json.dumps({"type": type(error).__name__, "message": str(error)}))
        return error.exit_code
    Path(request["result"]).write_text(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(execute(Path(sys.argv[1])))
