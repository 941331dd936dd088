"""Runs one export step in a child process: `python -m edgekit._worker REQUEST.json`.

Converters crash, hang and print; here they do it in a process of their own, whose output goes
to a log file and whose time is limited by the parent.
"""

from __future__ import annotations

import importlib
import json
import resource
import sys
import time
from pathlib import Path

from edgekit.spec import ExportSpec


def run(request: dict) -> dict:
    """Builds the step's input, calls its exporter, and returns what the exporter reported."""
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
    return result


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM starts afresh at exec; ru_maxrss would include the parent's."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    request = json.loads(Path(sys.argv[1]).read_text())
    result = run(request)
    Path(request["result"]).write_text(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
