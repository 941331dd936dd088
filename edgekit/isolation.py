"""Runs an export step in a child process with a time limit, its output captured to a log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from edgekit.errors import ExportError
from edgekit.spec import ExportSpec

LOG_TAIL_LINES = 25


def run_step(exporter: str, source: str | Path, output: Path, spec: ExportSpec, log: Path) -> dict:
    """Runs `exporter` on `source` in `python -m edgekit._worker`; returns the exporter's report.

    The child works in `output`'s folder, so any file a converter drops there stays inside the
    export's temporary folder.

    Raises:
        ExportError: the converter failed, crashed or ran past `spec.timeout`; names the log.
    """
    output = output.absolute()
    folder = output.parent
    request = folder / f".{output.name}.request.json"
    result = folder / f".{output.name}.result.json"
    request.write_text(json.dumps({"exporter": exporter, "input": str(source), "output": str(output),
                                   "spec": spec.to_dict(), "result": str(result)}))
    env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2")
    with open(log, "ab") as sink:
        try:
            process = subprocess.run([sys.executable, "-m", "edgekit._worker", str(request)], cwd=folder, env=env,
                                     stdout=sink, stderr=subprocess.STDOUT, timeout=spec.timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise ExportError(f"{exporter} ran past its time limit of {spec.timeout:.0f} s and was stopped. "
                              f"Log: {log}") from exc
    request.unlink(missing_ok=True)
    if process.returncode != 0 or not result.is_file() or not output.exists():
        how = f"exited with code {process.returncode}" if process.returncode >= 0 else f"was killed by signal {-process.returncode}"
        raise ExportError(f"{exporter} {how}. Last lines of its log ({log}):\n{tail(log)}")
    report = json.loads(result.read_text())
    result.unlink()
    return report


def tail(log: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a log file, indented."""
    text = log.read_text(errors="replace").splitlines() if log.is_file() else []
    return "\n".join("    " + line for line in text[-lines:])
