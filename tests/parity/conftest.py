"""The matrix report: each parity cell writes a JSON file; the controlling process merges them."""

from __future__ import annotations

import json
import os
from pathlib import Path

REPORT = Path(os.environ.get("EDGEKIT_PARITY_REPORT", "parity-report"))


def record_cell(model: str, target: str, cell: dict) -> None:
    """Saves one (model, target) result for the matrix report."""
    folder = REPORT / "cells"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{model}__{target}.json").write_text(json.dumps({"model": model, "target": target, **cell}))


def pytest_sessionfinish(session, exitstatus) -> None:
    if hasattr(session.config, "workerinput") or not (REPORT / "cells").is_dir():
        return
    cells = [json.loads(p.read_text()) for p in sorted((REPORT / "cells").glob("*.json"))]
    if not cells:
        return
    models = list(dict.fromkeys(c["model"] for c in cells))
    targets = list(dict.fromkeys(c["target"] for c in cells))
    by_pair = {(c["model"], c["target"]): c for c in cells}
    lines = ["| model | " + " | ".join(targets) + " |", "|---|" + "---|" * len(targets)]
    for model in models:
        row = []
        for target in targets:
            cell = by_pair.get((model, target))
            row.append("" if cell is None else f"{cell['status']} {cell.get('figure', '')}".strip())
        lines.append(f"| {model} | " + " | ".join(row) + " |")
    (REPORT / "matrix.md").write_text("\n".join(lines) + "\n")
    (REPORT / "matrix.json").write_text(json.dumps(cells, indent=2))
