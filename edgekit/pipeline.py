"""The export pipeline (`edgekit.export`): runs a target's steps in isolated processes, verifies each, writes the artifact atomically."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.artifact import Artifact, Progress, contract_with, finish, keep_log
from edgekit.calibration import DEFAULT_SIZE, load_calibration
from edgekit.contract import Contract
from edgekit.errors import InvalidSpecError, MissingBackendError
from edgekit.isolation import run_step
from edgekit.manifest import now, sha256_file, tool_versions
from edgekit.models import create_model, get_card, model_card
from edgekit.models.weights import weights_path
from edgekit.parity import TOLERANCES, ParityReport, build_probes, check
from edgekit.runners import runner_for
from edgekit.runners.torch_runner import TorchRunner
from edgekit.spec import ExportSpec, check_engine_options
from edgekit.targets import MODEL, Target, get_target

IO_DTYPES = ("int8", "float32")


def export(
    model: str,
    target: str,
    *,
    weights: str | Path | None = None,
    out: str | Path = "edgekit-out",
    num_classes: int | None = None,
    input_size: int | None = None,
    batch: int = 1,
    dynamic_batch: bool = False,
    calib: str | Path | None = None,
    calib_size: int = DEFAULT_SIZE,
    data: str | Path | None = None,
    verify: bool = True,
    force: bool = False,
    io_dtype: str = "int8",
    tolerance: dict[str, Any] | None = None,
    timeout: float = 1800.0,
    workspace_mb: int = 2048,
    timing_cache: str | Path | None = None,
    max_batch: int = 16,
    opt_batch: int = 1,
    progress: bool = True,
) -> Artifact:
    """Exports a zoo model to a target and verifies every step against PyTorch.

    Writes `out/<model>-<target>/` holding the artifact and `manifest.json`. Nothing appears at
    that path unless the export finishes, and an existing folder is replaced only with `force`.

    Args:
        model: zoo model name or alias.
        target: export target name (see `edgekit targets`).
        weights: None (random init), "imagenet" (offline) or a checkpoint path.
        calib: calibration images (folder) or preprocessed array (.npy); default: bundled photos.
        data: probe images (folder; labels from synsets in names or an ImageFolder layout).
        io_dtype: input/output tensor type of `tflite-int8` ("int8" or "float32").
        tolerance: overrides of the final precision's tolerance (atol, rtol, min_cosine, min_top1_agreement).
        workspace_mb, timing_cache: TensorRT builder workspace limit and timing cache file (default: one per
            GPU model and TensorRT version under ~/.cache/edgekit/tensorrt, reused by every build there).
        max_batch, opt_batch: the TensorRT optimization profile (1, opt, max) of a `dynamic_batch` engine.

    Raises:
        ParityError: a step missed its tolerance. The artifact is kept in `<model>-<target>.parity-failed/`
            and the error's `artifact` attribute points at it.
        ExportError, MissingBackendError, UsageError subclasses: see `edgekit.errors`.
    """
    spec_target = get_target(target)
    card = model_card(model, num_classes=num_classes, input_size=input_size)
    _check_options(spec_target, batch, dynamic_batch, io_dtype, calib, calib_size)
    check_engine_options(workspace_mb, max_batch, opt_batch)
    _check_backends(spec_target)
    out = Path(out).absolute()
    final = out / f"{card.name}-{spec_target.name}"
    if final.exists() and not force:
        raise InvalidSpecError(f"{final} already exists; pass --force to replace it")
    weights_file = str(weights_path(get_card(model), weights)) if weights is not None else None
    spec = ExportSpec(card.name, spec_target.name, None if weights is None else str(weights), weights_file,
                      num_classes, input_size, batch, dynamic_batch, None, io_dtype, timeout,
                      None if data is None else str(data), workspace_mb, None if timing_cache is None else str(timing_cache),
                      max_batch, opt_batch)
    reference = create_model(model, weights=weights_file, num_classes=num_classes)
    progress_out = Progress(progress, len(spec_target.steps))
    progress_out.say(f"edgekit export {card.name} -> {spec_target.name}")
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=out))
    work.chmod(0o755)
    try:
        calibration = load_calibration(card, calib, calib_size) if spec_target.calibrated else None
        if calibration is not None:
            np.save(work / "calibration.npy", calibration.data)
            spec = dataclasses.replace(spec, calibration_file=str(work / "calibration.npy"))
        checked = _reference_report(spec_target, card, reference, spec, calib) if verify else None
        fp16_risk = None
        if spec_target.fp16_risk_check:
            fp16_risk, spec = _fp16_risk(spec, progress_out)
        records, contract, last = _run_steps(work, final, spec_target, card, spec, checked, tolerance or {}, progress_out)
        status = "unverified" if checked is None else ("verified" if checked.report.passed else "parity-failed")
        manifest = _manifest(spec_target, last, card, contract, spec, calibration, records, checked,
                             work / last.output, status)
        if fp16_risk is not None:
            manifest["fp16_risk"] = fp16_risk
        return finish(work, final, manifest, None if checked is None else checked.report, force, progress_out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


@dataclass
class _Reference:
    """The probes and the PyTorch reference's logits on them, with the report being filled in."""

    probes: Any
    logits: np.ndarray
    report: ParityReport


def _reference_report(target: Target, card, reference, spec: ExportSpec, calib) -> _Reference:
    contract = Contract.from_card(card, batch=None if spec.dynamic_batch else spec.batch)
    probes = build_probes(card, contract, spec.data)
    with TorchRunner(reference, contract) as runner:
        logits = runner.infer(probes.reference)
    report = ParityReport(card.name, target.name, probes.source)
    if target.calibrated and calib is None and spec.data is None:
        report.notes.append("The probe photos are the bundled photos that also calibrated this artifact, so "
                            "they flatter it; pass --data with your own images for an independent check.")
    return _Reference(probes, logits, report)


def _run_steps(work: Path, final: Path, target: Target, card, spec: ExportSpec, reference: _Reference | None,
               overrides: dict[str, Any], progress: Progress):
    """Runs each step in its own process and verifies its output before the next; stops at a parity failure."""
    base = Contract.from_card(card, batch=None if spec.dynamic_batch else spec.batch)
    (work / "logs").mkdir()
    records, contract, last = [], base, None
    for index, (step, source) in enumerate(target.inputs(), start=1):
        progress.step(index, step.name)
        log = work / "logs" / f"{index}-{step.output}.log"
        try:
            result = run_step(step.exporter, MODEL if source == MODEL else work / source, work / step.output, spec, log)
        except Exception:
            keep_log(log, final)
            raise
        contract = contract_with(base, result.get("contract", {}))
        record = {"step": step.name, "output": step.output, "seconds": round(result["seconds"], 2),
                  "peak_rss_mb": round(result["peak_rss_mb"], 1), "info": result.get("info", {}),
                  "notes": result.get("notes", []), "contract": contract.to_dict()}
        records.append(record)
        last = step
        line = f"{record['seconds']:7.1f}s  peak {record['peak_rss_mb']:6.0f} MB"
        if reference is not None:
            tolerance = TOLERANCES[step.precision]
            if step.precision == target.precision:
                tolerance = tolerance.replace(**overrides)
            step_report = check(step.name, runner_for(work / step.output, contract), reference.logits,
                                reference.probes, tolerance)
            reference.report.steps.append(step_report)
            record["parity"] = "passed" if step_report.passed else "failed"
            line += f"  {'ok' if step_report.passed else 'PARITY FAILED'}  {step_report.summary()}"
        progress.done(line)
        for note in record["notes"]:
            progress.say(f"      note: {note}")
        if reference is not None and not reference.report.passed:
            break
    return records, contract, last


def _fp16_risk(spec: ExportSpec, progress: Progress) -> tuple[dict[str, Any], ExportSpec]:
    """The FP16 risk check before an FP16 engine build: layers to keep in FP32 go into the spec."""
    from edgekit.fp16 import check_fp16

    report = check_fp16(spec.model, weights=spec.weights_file, data=spec.data, num_classes=spec.num_classes)
    keep = report.keep_fp32()
    worst = report.worst
    progress.say(f"  FP16 risk check: worst layer {worst.name} (max |x| {worst.absmax:.3g}); "
                 f"emulated FP16 {'meets' if report.passed else 'misses'} FP16 parity; "
                 f"{'keeping in FP32: ' + ', '.join(keep) if keep else 'no layer needs FP32'}")
    summary = {"passed": report.passed, "worst_layer": worst.name, "worst_absmax": worst.absmax,
               "keep_fp32": keep, "flagged": len(report.flagged), "failures": report.failures,
               "emulated_fp16": report.emulated["images"], "probes": report.probes}
    return summary, dataclasses.replace(spec, fp32_layers=tuple(keep))


def _check_options(target: Target, batch: int, dynamic_batch: bool, io_dtype: str, calib, calib_size: int) -> None:
    if batch < 1:
        raise InvalidSpecError(f"--batch must be at least 1, got {batch}")
    if dynamic_batch and not target.supports_dynamic_batch:
        raise InvalidSpecError(f"--dynamic-batch is not supported by {target.name}; export a static batch (--batch N)")
    if dynamic_batch and batch != 1:
        raise InvalidSpecError("--dynamic-batch and --batch N conflict: a dynamic batch has no fixed size")
    if io_dtype not in IO_DTYPES:
        raise InvalidSpecError(f"--io-dtype must be one of {IO_DTYPES}, got {io_dtype!r}")
    if io_dtype != "int8" and target.name != "tflite-int8":
        raise InvalidSpecError(f"--io-dtype applies to tflite-int8 only, not {target.name}")
    if calib is not None and not target.calibrated:
        raise InvalidSpecError(f"--calib applies to calibrated targets only; {target.name} uses no calibration")
    if calib_size < 1:
        raise InvalidSpecError(f"--calib-size must be at least 1, got {calib_size}")


def _check_backends(target: Target) -> None:
    reason = target.unavailable_reason()
    if reason:
        raise MissingBackendError(f"target {target.name} is unavailable here: {reason}")


def _manifest(target, step, card, contract, spec: ExportSpec, calibration, records, reference, artifact_file,
              status) -> dict[str, Any]:
    report = None if reference is None else reference.report
    return {
        "edgekit_manifest": 1,
        "created": now(),
        "status": status,
        "model": card.name,
        "target": target.name,
        "description": target.description,
        "precision": step.precision,
        "artifact": {"file": artifact_file.name, "bytes": artifact_file.stat().st_size,
                     "sha256": sha256_file(artifact_file)},
        "card": card.to_dict(),
        "contract": contract.to_dict(),
        "weights": {"source": spec.weights,
                    "sha256": None if spec.weights_file is None else sha256_file(spec.weights_file)},
        "calibration": None if calibration is None else calibration.to_dict(),
        "export": {"batch": spec.batch, "dynamic_batch": spec.dynamic_batch, "input_size": card.input_size,
                   "num_classes": card.num_classes, "io_dtype": spec.io_dtype if target.name == "tflite-int8" else None,
                   "data": spec.data},
        "notes": list(target.notes) + [n for r in records for n in r["notes"]],
        "steps": records,
        "tools": tool_versions(),
        "parity": None if report is None else report.to_dict(),
    }
