"""The matrix report: each parity cell writes a JSON file; the controlling process merges them."""

from __future__ import annotations

import json
import os
from pathlib import Path

from edgekit.models import list_models
from edgekit.targets import list_targets

REPORT = Path(os.environ.get("EDGEKIT_PARITY_REPORT", "parity-report"))


def record_cell(model: str, target: str, cell: dict) -> None:
    """Saves one (model, target) result for the matrix report."""
    folder = REPORT / "cells"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{model}__{target}.json").write_text(json.dumps({"model": model, "target": target, **cell}))


def pytest_sessionfinish(session, exitstatus) -> None:
    if hasattr(session.config, "workerinput") or not (REPORT / "cells").is_dir():
        return
    from tests.parity.matrix import UNSUPPORTED

    cells = [json.loads(p.read_text()) for p in sorted((REPORT / "cells").glob("*.json"))]
    if not cells:
        return
    cells = [c for c in cells if (c["model"], c["target"]) not in UNSUPPORTED]
    cells += [{"model": m, "target": t, "status": "unsupported", "reason": reason} for (m, t), reason in UNSUPPORTED.items()]
    models = [m for m in list_models() if any(c["model"] == m for c in cells)]
    targets = [t for t in list_targets() if any(c["target"] == t for c in cells)]
    by_pair = {(c["model"], c["target"]): c for c in cells}
    lines = ["| model | " + " | ".join(targets) + " |", "|---|" + "---|" * len(targets)]
    for model in models:
        row = []
        for target in targets:
            cell = by_pair.get((model, target))
            row.append("" if cell is None else f"{cell['status']} {cell.get('figure', '')}".strip())
        lines.append(f"| {model} | " + " | ".join(row) + " |")
    reasons = dict.fromkeys(f"- {c['status']} ({c['target']}...): {c['reason']}" if c["status"] == "unavailable"
                            else f"- {c['status']}: {c['reason']}" for c in cells if c.get("reason"))
    lines += ["", *reasons, "", *_step_times(cells)]
    (REPORT / "matrix.md").write_text("\n".join(lines) + "\n")
    (REPORT / "matrix.json").write_text(json.dumps(cells, indent=2))


def _step_times(cells: list[dict]) -> list[str]:
    """Seconds per step, summed over models (a step shared by several targets counted once), biggest first."""
    once = {(c["model"], step): (seconds, verify or 0.0) for c in cells for step, seconds, verify in c.get("steps", [])}
    totals: dict[str, list[float]] = {}
    for (_, step), (seconds, verify) in once.items():
        total = totals.setdefault(step, [0, 0.0, 0.0])
        total[0] += 1
        total[1] += seconds
        total[2] += verify
    if not totals:
        return []
    lines = ["| step | runs | step s | verify s |", "|---|---|---|---|"]
    for step, (runs, seconds, verify) in sorted(totals.items(), key=lambda kv: -(kv[1][1] + kv[1][2])):
        lines.append(f"| {step} | {runs} | {seconds:.0f} | {verify:.0f} |")
    return ["Step times (each step once per model, in its own process, beside others):", "", *lines]
