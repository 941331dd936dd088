"""Exports models through every target and tabulates status, size, time, memory and parity.

    python scripts/export_table.py OUT_DIR MODEL[:WEIGHTS[:DATA]] ...

Writes OUT_DIR/export_table.json and OUT_DIR/export_table.md. Each export runs in this process
through `edgekit.export`, exactly as the CLI does; peak memory is each converter child's VmHWM.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from edgekit import export
from edgekit.errors import ParityError
from edgekit.targets import get_target, list_targets


def run(out: Path, model: str, weights: str | None, data: str | None) -> list[dict]:
    rows = []
    for target in list_targets():
        row = {"model": model, "target": target, "weights": weights or "seeded random", "data": data}
        reason = get_target(target).unavailable_reason()
        if reason:
            rows.append(row | {"status": "unavailable", "reason": reason})
            continue
        started = time.perf_counter()
        try:
            artifact = export(model, target, weights=weights, out=out / "artifacts", data=data, force=True)
        except ParityError as exc:
            artifact = exc.artifact
        except Exception as exc:  # a table row per failure, whatever raised it
            rows.append(row | {"status": "export-failed", "reason": f"{type(exc).__name__}: {str(exc).splitlines()[0]}"})
            continue
        manifest = artifact.manifest
        row |= {
            "status": manifest["status"], "bytes": manifest["artifact"]["bytes"],
            "wall_s": round(time.perf_counter() - started, 1),
            "convert_s": round(sum(s["seconds"] for s in manifest["steps"]), 1),
            "peak_mb": max(s["peak_rss_mb"] for s in manifest["steps"]),
            "steps": [{"step": s["step"], "passed": s["passed"], **{k: s["metrics"][k] for k in (
                "max_abs", "cosine_mean", "top1_agreement", "decisive_probes")}, "accuracy": s["metrics"]["accuracy"]}
                for s in manifest["parity"]["steps"]],
        }
        rows.append(row)
        print(json.dumps({k: row[k] for k in ("model", "target", "status", "wall_s")}), flush=True)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| model | target | status | size | wall | convert | peak MB | parity per step (max abs / cosine / top-1 agreement) | top-1 ref -> artifact |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "steps" not in r:
            lines.append(f"| {r['model']} | {r['target']} | {r['status']} | | | | | {r['reason'][:90]} | |")
            continue
        parity = "<br>".join(f"{s['step']}: {s['max_abs']:.1e} / {s['cosine_mean']:.4f} / "
                             f"{'n/a' if s['top1_agreement'] is None else format(s['top1_agreement'], '.1%')} of {s['decisive_probes']}"
                             for s in r["steps"])
        acc = r["steps"][-1]["accuracy"]
        accuracy = f"{acc['reference_top1']:.1%} -> {acc['artifact_top1']:.1%}" if acc else ""
        lines.append(f"| {r['model']} | {r['target']} | {r['status']} | {r['bytes'] / 1e6:.1f} MB | {r['wall_s']}s | "
                     f"{r['convert_s']}s | {r['peak_mb']:.0f} | {parity} | {accuracy} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for item in sys.argv[2:]:
        model, weights, data = (item.split(":") + [None, None])[:3]
        rows += run(out, model, weights or None, data or None)
        (out / "export_table.json").write_text(json.dumps(rows, indent=2))
        (out / "export_table.md").write_text(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
