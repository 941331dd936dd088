"""`edgekit bench`: exports (or reuses) each target, then measures speed, size, memory, accuracy and parity."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.contract import Contract
from edgekit.errors import EdgekitError, InvalidSpecError, ParityError
from edgekit.manifest import read_manifest, write_json
from edgekit.models import get_card, model_card
from edgekit.manifest import sha256_file
from edgekit.models.weights import weights_path
from edgekit.targets import get_target

MEASURE_TIMEOUT = 900


@dataclass
class BenchResult:
    """Rows per target (plus PyTorch eager), the CPU's compute floor, and where the reports went."""

    model: str
    threads: int
    matmul_gflops: float
    load_before: float = 0.0
    rows: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)


def bench(
    model: str,
    targets: str | list[str] = "all",
    *,
    weights: str | None = None,
    data: str | Path | None = None,
    runs: int = 50,
    warmup: int = 10,
    threads: int = 2,
    rounds: int = 3,
    out: str | Path = "edgekit-bench",
    progress: bool = True,
) -> BenchResult:
    """Benchmarks `model` on each target with the same thread count, beside PyTorch eager fp32.

    `targets` is what `edgekit export --target` takes: names, "all", a glob or a family ("tflite").
    Artifacts already in `out/artifacts` whose manifest records the same weights are reused. The `runs` are
    timed in `rounds` rounds (see `_time_rounds`), so rows of one run are timed over the same stretch of time.

    Raises:
        UnknownTargetError, InvalidSpecError: a bad target or option.
        MissingBackendError: none of the targets can run here.
    """
    from edgekit.pipeline.plan import resolve_targets

    names, _ = resolve_targets(targets)
    if runs < 1 or threads < 1 or rounds < 1:
        raise InvalidSpecError("--runs, --threads and --rounds must be at least 1")
    reasons = {name: get_target(name).unavailable_reason() for name in names}
    if all(reasons.values()):  # nothing to measure beside PyTorch: no report, as export does
        from edgekit.errors import MissingBackendError

        raise MissingBackendError("none of the targets to bench can run here ("
                                  + "; ".join(f"{name}: {reason}" for name, reason in reasons.items()) + ")")
    card = model_card(model)
    if data is not None:
        from edgekit.images import find_images

        find_images(data, card)  # a missing or empty folder is bad input, not a failed row per target
    out = Path(out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    result = BenchResult(card.name, threads, _child({"matmul": True, "threads": threads}, out)["gflops"])
    result.load_before = os.getloadavg()[0]
    if result.load_before > max(0.5, (os.cpu_count() or 1) - threads + 0.5) and progress:
        print(f"warning: 1-minute load average is {result.load_before:.1f} on {os.cpu_count()} cores; other work "
              "distorts latency (OpenMP threads spin badly when cores are oversubscribed)", file=sys.stderr)
    weights_file = None if weights is None else str(weights_path(get_card(model), weights))
    weights_sha = None if weights_file is None else sha256_file(weights_file)
    reference = {"name": card.name, "weights": weights_file, "num_classes": None}
    result.rows.append({"target": "pytorch (eager fp32)", "status": "reference", "bytes": None, "top1_agreement": 1.0})
    timed = [(result.rows[0], {"artifact": "", "contract": Contract.from_card(card, batch=None).to_dict(),
                               "warmup": warmup, "threads": threads, "model": reference})]
    available = [name for name in names if not reasons[name]]
    failed = _export_together(card.name, available, weights, weights_sha, data, out / "artifacts", progress)
    for name in names:
        row, request = _bench_target(card.name, name, weights, weights_sha, data, out, progress, reasons[name],
                                     failed.get(name))
        result.rows.append(row)
        if request is not None:
            timed.append((row, request | {"warmup": warmup, "threads": threads}))
    _time_rounds(timed, runs, rounds, out, progress)
    _context_columns(result, card.macs)
    result.files = _write_reports(result, out)
    return result


def _bench_target(model, target, weights, weights_sha, data, out, progress, reason: str | None = None,
                  failed: EdgekitError | None = None) -> tuple[dict[str, Any], dict | None]:
    """The target's row before timing (its artifact, status, size and agreement, or why it has none) and what its
    timing process needs to run the artifact, None if there is nothing to run."""
    row: dict[str, Any] = {"target": target}
    if reason:
        return row | {"status": "unavailable", "reason": reason}, None
    failure = None
    try:
        if failed is not None:
            raise failed
        directory = _artifact(model, target, weights, weights_sha, data, out / "artifacts", progress)
    except ParityError as exc:
        directory, failure = exc.artifact.directory, str(exc).splitlines()[0]
    except EdgekitError as exc:
        return row | {"status": "export-failed", "reason": str(exc).splitlines()[0]}, None
    manifest = read_manifest(directory)
    final = manifest["parity"]["steps"][-1] if manifest.get("parity") else {}
    last = final.get("metrics", {})
    photos = final.get("by_kind", {}).get("image", last)  # the photos the gate reads, without the random tensors
    row |= {"status": "ok" if manifest["status"] == "verified" else manifest["status"],
            "bytes": _artifact_bytes(manifest), "precision": manifest["precision"],
            "top1_agreement": last.get("top1_agreement"), "decisive_probes": last.get("decisive_probes"),
            "top1_agreement_all": photos.get("top1_agreement_all"), "own_photos": manifest["export"].get("data") is not None,
            "accuracy": last.get("accuracy", {}), "artifact": str(directory)}
    if failure:
        row["reason"] = failure
    return row, {"artifact": str(directory / manifest["artifact"]["file"]), "contract": manifest["contract"]}


def _time_rounds(timed: list[tuple[dict, dict]], runs: int, rounds: int, out: Path, progress: bool) -> None:
    """Times each (row, request) in `rounds` rounds, the order reversed every other round, and fills in its row.

    Each round starts every runtime in a fresh process (its peak memory its own) that warms up and times its share
    of `runs`; a row's median and p90 are over all its runs, and `round_medians_ms` shows how far the host drifted.
    Rows timed one after another in one block each differed by up to 2.1x between runs minutes apart on a busy host
    (docs/benchmarks.md); in rounds every row samples the same stretches of time. Batch-8 throughput is measured in
    the last round.
    """
    import numpy as np

    rounds = min(rounds, runs)
    measured: list[list[dict] | None] = [[] for _ in timed]  # each row's rounds; None once its runtime cannot run it
    order = list(range(len(timed)))
    for number in range(rounds):
        share = runs // rounds + (number < runs % rounds)
        for index in order if number % 2 == 0 else order[::-1]:
            row, request = timed[index]
            if measured[index] is None:
                continue
            if progress:
                print(f"  timing {row['target']}: round {number + 1}/{rounds}, {share} runs", file=sys.stderr, flush=True)
            try:
                measured[index].append(_child(request | {"runs": share, "throughput": number == rounds - 1}, out))
            except EdgekitError as exc:
                if row["status"] == "reference":
                    raise
                # An artifact whose runtime cannot run it (verified or not) is a row with its reason, not a failed bench.
                last_line = str(exc).strip().splitlines()[-1]
                row |= {"status": "run-failed" if row["status"] == "ok" else row["status"],
                        "reason": f"cannot run: {last_line}"}
                measured[index] = None
    for (row, _), results in zip(timed, measured):
        if results is None:
            continue
        runs_ms = [t for result in results for t in result["times_ms"]]
        row |= {"round_medians_ms": [result["median_ms"] for result in results],
                "peak_rss_mb": max(result["peak_rss_mb"] for result in results),
                "throughput_batch8": results[-1]["throughput_batch8"], "threads": results[-1]["threads"],
                "median_ms": float(np.median(runs_ms)), "p90_ms": float(np.percentile(runs_ms, 90)),
                "runs": len(runs_ms), "rounds": rounds}


def _artifact_bytes(manifest: dict) -> int:
    """The artifact file and its companions (an OpenVINO IR's .bin holds the weights)."""
    artifact = manifest["artifact"]
    return artifact["bytes"] + sum(companion["bytes"] for companion in artifact.get("companions", []))


def _reusable(directory: Path, weights_sha, data) -> bool:
    """Whether an earlier run left a verified artifact of the same weights and probe data, unchanged since."""
    if not (directory / "manifest.json").is_file():
        return False
    manifest = read_manifest(directory)
    recorded = (manifest["weights"]["sha256"], manifest["status"], manifest["export"].get("data"))
    files = [manifest["artifact"], *manifest["artifact"].get("companions", [])]
    return recorded == (weights_sha, "verified", None if data is None else str(data)) and all(
        (directory / f["file"]).is_file() and sha256_file(directory / f["file"]) == f["sha256"] for f in files)


def _export_together(model, names, weights, weights_sha, data, artifacts: Path, progress) -> dict[str, EdgekitError]:
    """Exports every target of `names` (all available here) that has no reusable artifact in one run, so they share
    their steps.

    Returns the targets that failed, with their errors; each becomes its row's status.
    """
    from edgekit import export
    from edgekit.errors import ExportFailures

    todo = [n for n in names if not _reusable(artifacts / f"{model}-{n}", weights_sha, data)]
    if len(todo) > 1:
        try:
            export(model, todo, weights=weights, out=artifacts, data=data, force=True, progress=progress)
        except ExportFailures as exc:
            return exc.errors
    return {}


def _artifact(model, target, weights, weights_sha, data, artifacts: Path, progress) -> Path:
    """A verified artifact of the same weights and probe data from an earlier run, unchanged since, or a fresh export."""
    from edgekit import export

    directory = artifacts / f"{model}-{target}"
    if _reusable(directory, weights_sha, data):
        return directory
    return export(model, target, weights=weights, out=artifacts, data=data, force=True, progress=progress).directory


def _child(request: dict, out: Path) -> dict:
    with tempfile.TemporaryDirectory(dir=out) as folder:
        request_file, result_file = Path(folder) / "request.json", Path(folder) / "result.json"
        request_file.write_text(json.dumps(request | {"result": str(result_file)}))
        process = subprocess.run([sys.executable, "-m", "edgekit.bench.timing", str(request_file)], capture_output=True,
                                 text=True, timeout=MEASURE_TIMEOUT)
        if process.returncode != 0:
            raise EdgekitError(f"benchmark process failed:\n{process.stderr[-2000:]}")
        return json.loads(result_file.read_text())


def speedup(base: dict[str, Any], row: dict[str, Any]) -> float:
    """How many times faster `row` ran than `base`: the median, over rounds, of the two rows' ratio within each round.

    This host ran whole stretches of tens of seconds at 1.6-1.9x the latency (every runtime alike), and rows whose
    pooled medians fell on different sides of such a stretch compared wrongly (shufflenet_v2_x1_0 onnx-int8 against
    onnx: 1.23x pooled, 1.63x round by round, 1.5-2.0x within each round but one). With one round, the medians' ratio.
    """
    import statistics

    ours, theirs = row.get("round_medians_ms", []), base.get("round_medians_ms", [])
    if len(ours) > 1 and len(ours) == len(theirs):
        return statistics.median(b / r for b, r in zip(theirs, ours))
    return base["median_ms"] / row["median_ms"]


def _context_columns(result: BenchResult, macs: int) -> None:
    floor_ms = 2 * macs / (result.matmul_gflops * 1e9) * 1000
    for row in result.rows:
        if "median_ms" in row:
            row["speedup_vs_eager"] = speedup(result.rows[0], row)
            row["floor_ms"] = floor_ms
            row["fraction_of_floor"] = floor_ms / row["median_ms"]


def agreement(row: dict[str, Any]) -> float | None:
    """The row's top-1 agreement with PyTorch: over all the user's photos where it has them, else the decisive probes.

    On the user's photos near ties count, as the int8 gate counts them; the bundled probe views are mostly
    scenes, near ties for an ImageNet classifier, so there only the decisive ones say anything.
    """
    overall = row.get("top1_agreement_all")
    return overall if row.get("own_photos") and overall is not None else row.get("top1_agreement")


def summary(result: BenchResult) -> str:
    """One line: the fastest verified artifact and the fastest within the int8 agreement bar, with speed-ups.

    Each is compared with PyTorch eager and with the fastest verified fp32 artifact of the same run, round by round
    (`speedup`).
    """
    from edgekit.parity import TOLERANCES

    bar = TOLERANCES["int8"].min_top1_agreement
    timed = [r for r in result.rows[1:] if r["status"] == "ok" and r.get("median_ms")]
    fp32 = min((r for r in timed if r.get("precision") == "fp32"), key=lambda r: r["median_ms"], default=None)
    within = [r for r in timed if agreement(r) is not None and agreement(r) >= bar]

    def describe(row: dict[str, Any] | None) -> str:
        if row is None:
            return "none"
        text = f"{row['target']} {row['median_ms']:.2f} ms ({speedup(result.rows[0], row):.1f}x eager"
        if fp32 is not None:
            text += f", {speedup(fp32, row):.2f}x {fp32['target']}"
        return text + ")"

    fastest = min(timed, key=lambda r: r["median_ms"], default=None)
    fastest_within = min(within, key=lambda r: r["median_ms"], default=None)
    best_fp32 = "none" if fp32 is None else f"{fp32['target']} {fp32['median_ms']:.2f} ms"
    return (f"{result.model}: fastest verified: {describe(fastest)}; fastest with top-1 agreement >= {bar:.0%} "
            f"(the int8 bar): {describe(fastest_within)}; best fp32 artifact: {best_fp32}")


def table(result: BenchResult) -> tuple[list[str], list[list[str]]]:
    """The terminal and markdown table: header and rows."""
    header = ["target", "status", "size MB", "median ms", "p90 ms", "img/s b8", "peak MB", "x eager", "vs sgemm",
              "top-1", "top-5", "agree (decisive)", "agree (all)", "note"]
    rows = []
    for r in result.rows:
        accuracy = r.get("accuracy") or {}
        if r["status"] == "reference":
            top1, top5 = _first_accuracy(result, "reference_top1"), _first_accuracy(result, "reference_top5")
        else:
            top1, top5 = accuracy.get("artifact_top1"), accuracy.get("artifact_top5")
        rows.append([
            r["target"], r["status"], _fmt(r.get("bytes"), lambda v: f"{v / 1e6:.1f}"),
            _fmt(r.get("median_ms"), "{:.2f}"), _fmt(r.get("p90_ms"), "{:.2f}"), _fmt(r.get("throughput_batch8"), "{:.0f}"),
            _fmt(r.get("peak_rss_mb"), "{:.0f}"), _fmt(r.get("speedup_vs_eager"), "{:.1f}"),
            _fmt(r.get("fraction_of_floor"), "{:.0%}"), _fmt(top1, "{:.1%}"), _fmt(top5, "{:.1%}"),
            _fmt(r.get("top1_agreement"), "{:.1%}"), _fmt(r.get("top1_agreement_all"), "{:.1%}"), (r.get("reason") or "")[:60],
        ])
    return header, rows


def _first_accuracy(result: BenchResult, key: str):
    return next((r["accuracy"][key] for r in result.rows if (r.get("accuracy") or {}).get(key) is not None), None)


def _fmt(value, spec) -> str:
    if value is None:
        return ""
    return spec(value) if callable(spec) else spec.format(value)


def _write_reports(result: BenchResult, out: Path) -> dict[str, str]:
    header, rows = table(result)
    data = {"model": result.model, "threads": result.threads, "matmul_gflops": result.matmul_gflops,
            "load_average_before": result.load_before, "cpu_count": os.cpu_count(), "rows": result.rows,
            "summary": summary(result)}
    write_json(out / "bench.json", data)
    lines = [f"# edgekit bench: {result.model}", "",
             f"{result.threads} threads, batch 1 latency over the runs after warm-up, timed in rounds that alternate the "
             f"targets' order (each row's median per round is in bench.json). 'vs sgemm': the model's "
             f"FLOP rate as a fraction of a 2048x2048 fp32 matmul's in the same run ({result.matmul_gflops:.0f} "
             f"GFLOP/s, {result.rows[0].get('floor_ms', 0):.2f} ms for this model); above 100% the runtime's kernels "
             "sustain more than torch's sgemm did, so that figure is a reference rate, not a hard floor.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", data["summary"]]
    (out / "bench.md").write_text("\n".join(lines) + "\n")
    files = {"json": str(out / "bench.json"), "markdown": str(out / "bench.md")}
    plot = _plot(result, out / "bench.png")
    if plot:
        files["plot"] = plot
    return files


def _plot(result: BenchResult, path: Path) -> str | None:
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator

    labelled = _first_accuracy(result, "reference_top1") is not None
    points = []
    for row in result.rows:
        if labelled:
            value = _first_accuracy(result, "reference_top1") if row["status"] == "reference" else (row.get("accuracy") or {}).get("artifact_top1")
        else:
            value = agreement(row)
        if "median_ms" in row and value is not None:
            points.append((row["median_ms"], value * 100, row))
    if not points:
        return None
    figure, axes = plt.subplots(figsize=(8, 5))
    low, high = math.log(min(p[0] for p in points) / 1.3), math.log(max(p[0] for p in points) * 2.0)
    axes.set_xscale("log")
    axes.set_xlim(math.exp(low), math.exp(high))
    for (x, y, row), level in zip(points, _label_levels(points, low, high)):
        axes.scatter(x, y, color="tab:red" if row["status"] not in ("ok", "reference") else "tab:blue")
        axes.annotate(row["target"], (x, y), textcoords="offset points", xytext=(4, 4 + 10 * level), fontsize=8)
    axes.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.xaxis.set_minor_formatter(FuncFormatter(lambda value, _: ""))
    axes.set_xlabel(f"median latency, batch 1, {result.threads} threads (ms, log scale)")
    axes.set_ylabel("top-1 accuracy (%)" if labelled else "top-1 agreement with PyTorch fp32 (%)")
    axes.set_title(f"edgekit bench: {result.model}")
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return str(path)


def _label_levels(points, low: float, high: float, char_width: float = 0.0075, line: float = 0.05) -> list[int]:
    """A stacking level per label, so no two labels at about the same height overlap (in axes fractions)."""
    values = [y for _, y, _ in points]
    spread = (max(values) - min(values)) * 1.1 or 1.0
    placed: list[tuple[float, float, float, int]] = []
    levels = []
    for x, y, row in points:
        start = (math.log(x) - low) / (high - low)
        end = start + char_width * (len(row["target"]) + 1)
        taken = {level for a, b, py, level in placed if abs(py - y) / spread < line and a < end and start < b}
        level = next(level for level in range(len(points) + 1) if level not in taken)
        placed.append((start, end, y, level))
        levels.append(level)
    return levels
