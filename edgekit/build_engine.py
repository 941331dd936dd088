"""`edgekit build-engine`: a TensorRT engine built on the device from an ONNX artifact exported elsewhere.

This is the Jetson workflow: `edgekit export MODEL --target onnx` on a workstation, copy the
folder, build the engine on the device (an engine only runs on the GPU and TensorRT version
that built it). Devices rarely have PyTorch, so nothing here imports it: the engine is verified
against the ONNX artifact run by ONNX Runtime on the same probes. That ONNX file was verified
against PyTorch when it was exported; its figures are carried into the engine's manifest.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.pipeline.artifact import Artifact, Progress, contract_with, finish, keep_log, write_labels
from edgekit.backends import missing
from edgekit.calibration import DEFAULT_SIZE, load_calibration
from edgekit.contract import Contract
from edgekit.errors import InvalidSpecError, MissingBackendError
from edgekit.integrity import check_files
from edgekit.pipeline.execute import run_step
from edgekit.manifest import manifest_card, now, read_manifest, sha256_file, tool_versions
from edgekit.parity import TOLERANCES, ParityReport, build_probes, check
from edgekit.runners import runner_for
from edgekit.pipeline.spec import ExportSpec, check_engine_options
from edgekit.pipeline.staging import claim, disk_error, interruptible, is_disk_full, prepare_out, remove, sweep_stale
from edgekit.targets import get_target

PRECISIONS = ("fp16", "int8")


def build_engine(
    directory: str | Path,
    precision: str,
    *,
    out: str | Path | None = None,
    calib: str | Path | None = None,
    calib_size: int = DEFAULT_SIZE,
    data: str | Path | None = None,
    max_batch: int = 16,
    opt_batch: int = 1,
    workspace_mb: int = 2048,
    timing_cache: str | Path | None = None,
    fp32_layers: tuple[str, ...] = (),
    force: bool = False,
    tolerance: dict[str, Any] | None = None,
    timeout: float = 1800.0,
    progress: bool = True,
    require_signature: str | Path | None = None,
) -> Artifact:
    """Builds `<model>-tensorrt-<precision>/` beside the ONNX artifact in `directory` (or in `out`), verified.

    Args:
        directory: a folder written by `edgekit export MODEL --target onnx`, status verified.
        precision: "fp16" or "int8" (calibrated on `calib`, default: the bundled photos).
        data: probe images; default: the bundled photos and seeded random tensors.
        max_batch, opt_batch: the optimization profile, used when the ONNX artifact has a dynamic batch.
        fp32_layers: PyTorch module names to keep in FP32 in an FP16 engine (from `edgekit check-fp16`).

    Raises:
        InvalidSpecError: not an ONNX artifact, not verified, changed since export, or bad options.
        MissingBackendError: TensorRT, a GPU, or ONNX Runtime is missing.
        ParityError: the engine does not match the ONNX artifact; kept in `<name>.parity-failed/`.
    """
    if precision not in PRECISIONS:
        raise InvalidSpecError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    check_engine_options(workspace_mb, max_batch, opt_batch)
    source = Path(directory).absolute()
    recorded = read_manifest(source)
    if require_signature is not None:
        from edgekit.integrity.signing import verify_signature

        verify_signature(source, require_signature)
    onnx_file = _checked_onnx(source, recorded)
    target = get_target(f"tensorrt-{precision}")
    _check_backends()
    card = manifest_card(recorded)
    base = Contract.from_dict(recorded["contract"])
    exported = recorded["export"]
    final = prepare_out(Path(out or source.parent)) / f"{card.name}-{target.name}"
    if final.exists() and not force:
        raise InvalidSpecError(f"{final} already exists; pass --force to replace it")
    progress_out = Progress(progress, 1)
    progress_out.say(f"edgekit build-engine {source.name} -> {target.name}")
    sweep_stale(final.parent)
    with interruptible():
        work = claim(final.parent / f".{final.name}.partial")
        try:
            return _build(source, recorded, onnx_file, target, card, base, exported, final, work, calib, calib_size,
                          data, max_batch, opt_batch, workspace_mb, timing_cache, fp32_layers, force, tolerance,
                          timeout, progress_out)
        except OSError as exc:
            if is_disk_full(exc):
                raise disk_error(exc, final.parent) from exc
            raise
        finally:
            if work.exists():
                remove(work)


def _build(source, recorded, onnx_file, target, card, base, exported, final, work, calib, calib_size, data, max_batch,
           opt_batch, workspace_mb, timing_cache, fp32_layers, force, tolerance, timeout, progress_out) -> Artifact:
    """Calibrates, builds and verifies the engine in the claimed work folder, then moves it into place."""
    calibration = load_calibration(card, calib, calib_size) if target.calibrated else None
    spec = ExportSpec(card.name, target.name, recorded["weights"]["source"], None, exported["num_classes"],
                      exported["input_size"], exported["batch"], exported["dynamic_batch"], None, "int8", timeout,
                      None if data is None else str(data), workspace_mb,
                      None if timing_cache is None else str(timing_cache), max_batch, opt_batch, tuple(fp32_layers))
    if calibration is not None:
        np.save(work / "calibration.npy", calibration.data)
        spec = dataclasses.replace(spec, calibration_file=str(work / "calibration.npy"))
    probes = build_probes(card, base, data)
    with runner_for(onnx_file, base) as runner:
        reference = runner.infer(probes.artifact)
    report = ParityReport(card.name, target.name, probes.source)
    report.notes.append(f"Reference: the verified ONNX artifact {source.name} (sha256 "
                        f"{recorded['artifact']['sha256'][:12]}...) in ONNX Runtime on the CPU, not PyTorch, which "
                        "this device does not need. That ONNX file's own parity against PyTorch is in 'built_from'.")
    step = target.steps[-1]
    (work / "logs").mkdir()
    log = work / "logs" / f"1-{step.output}.log"
    progress_out.step(1, step.name)
    try:
        result = run_step(step.exporter, onnx_file, work / step.output, spec, log)
    except Exception:
        keep_log(log, final)
        raise
    contract = contract_with(base, result.get("contract", {}))
    tolerance_used = TOLERANCES[step.precision].replace(**(tolerance or {}))
    step_report = check(step.name, runner_for(work / step.output, contract), reference, probes, tolerance_used)
    report.steps.append(step_report)
    progress_out.done(f"{result['seconds']:7.1f}s  {'ok' if step_report.passed else 'PARITY FAILED'}  "
                      f"{step_report.summary()}")
    record = {"step": step.name, "output": step.output, "seconds": round(result["seconds"], 2),
              "peak_rss_mb": round(result["peak_rss_mb"], 1), "info": result.get("info", {}),
              "notes": result.get("notes", []), "contract": contract.to_dict(),
              "parity": "passed" if step_report.passed else "failed"}
    manifest = _manifest(recorded, source, target, card, contract, calibration, record, report,
                         work / step.output, fp32_layers)
    manifest["labels"] = write_labels(work, card)
    return finish(work, final, manifest, report, force, progress_out)


def _manifest(recorded, source: Path, target, card, contract, calibration, record, report, artifact_file: Path,
              fp32_layers: tuple[str, ...]) -> dict[str, Any]:
    """The engine's manifest: the ONNX artifact's record, the engine step appended, and where it came from."""
    return {
        "edgekit_manifest": 1,
        "created": now(),
        "status": "verified" if report.passed else "parity-failed",
        "model": card.name,
        "target": target.name,
        "description": target.description,
        "precision": target.precision,
        "artifact": {"file": artifact_file.name, "bytes": artifact_file.stat().st_size,
                     "sha256": sha256_file(artifact_file)},
        "card": card.to_dict(),
        "contract": contract.to_dict(),
        "weights": recorded["weights"],
        "calibration": None if calibration is None else calibration.to_dict(),
        "export": recorded["export"] | {"built_on_device": True},
        "notes": list(target.notes) + record["notes"] + _fp16_note(target.precision, fp32_layers),
        "steps": recorded["steps"] + [record],
        "tools": tool_versions(),
        "parity": report.to_dict(),
        "built_from": {"directory": str(source), "artifact_sha256": recorded["artifact"]["sha256"],
                       "parity": recorded.get("parity"), "tools": recorded.get("tools")},
    }


def _checked_onnx(source: Path, recorded: dict[str, Any]) -> Path:
    """The ONNX file of a verified `onnx` artifact whose bytes are still the ones exported."""
    if recorded.get("target") != "onnx":
        raise InvalidSpecError(f"{source} holds a {recorded.get('target')!r} artifact; build-engine needs an 'onnx' "
                               "artifact: run 'edgekit export MODEL --target onnx' first")
    if recorded.get("status") != "verified":
        raise InvalidSpecError(f"{source} is {recorded.get('status')!r}, not verified; export it again with verification")
    check_files(source, recorded)
    return source / recorded["artifact"]["file"]


def _check_backends() -> None:
    from edgekit.backends import install_hint
    from edgekit.gpu import unavailable_reason

    for module, extra in (("tensorrt", "tensorrt"), ("onnxruntime", "jetson")):
        if missing(module):
            raise MissingBackendError(f"build-engine needs {module}, which is not installed. "
                                      f"Install: {install_hint(module, extra)}")
    reason = unavailable_reason()
    if reason:
        raise MissingBackendError(f"build-engine needs an NVIDIA GPU: {reason}")


def _fp16_note(precision: str, fp32_layers: tuple[str, ...]) -> list[str]:
    if precision != "fp16":
        return []
    if fp32_layers:
        return [f"Kept in FP32 as asked: {', '.join(fp32_layers)}."]
    return ["The FP16 risk check needs PyTorch and was not run here; run 'edgekit check-fp16 MODEL' on the "
            "workstation and pass any layer it flags with --fp32-layers."]
