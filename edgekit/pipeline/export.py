"""`edgekit.export`: one model to one or several targets, each step run once and verified once.

Every step runs in a child process (see `execute`) and checks its own output against the
PyTorch reference before any step that reads it starts. Targets that begin with the same steps
share them (see `plan`). Each artifact is assembled in its own claimed `.partial` folder (see
`staging`) and renamed into place only when complete, exactly as if it were exported alone.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.calibration import DEFAULT_SIZE, load_calibration
from edgekit.card import ModelCard
from edgekit.contract import Contract
from edgekit.errors import (BudgetNotMetError, EdgekitError, ExportFailures, InvalidSpecError, MissingBackendError,
                            ParityError)
from edgekit.manifest import now, sha256_file, tool_versions
from edgekit.models import create_model, get_card, model_card, replaced_head
from edgekit.models import seeded, verification
from edgekit.models.weights import weights_path
from edgekit.parity import TOLERANCES, ParityReport, StepReport, build_probes
from edgekit.parity.probes import probe_notes
from edgekit.pipeline.artifact import Artifact, Progress, contract_with, finish, keep_log, write_labels
from edgekit.pipeline.execute import Done, Executor, Job
from edgekit.pipeline.plan import Node, Plan, build_plan, resolve_targets
from edgekit.pipeline.spec import ExportSpec, check_engine_options, check_keep_float
from edgekit.quantization.layers import check_module_names
from edgekit.pipeline.staging import claim, disk_error, interruptible, is_disk_full, prepare_out, remove, sweep_stale
from edgekit.runners.torch_runner import TorchRunner
from edgekit.targets import MODEL, Target, get_target

# Input/output tensor types of tflite-int8. uint8 and float32 are what MediaPipe and the TFLite Task
# Library accept; int8 is what LiteRT's own examples use. The graph inside is int8 either way.
IO_DTYPES = ("int8", "uint8", "float32")


def export(
    model: str,
    target: str | list[str],
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
    io_dtype: str = "uint8",
    tolerance: dict[str, Any] | None = None,
    timeout: float = 1800.0,
    workspace_mb: int = 2048,
    timing_cache: str | Path | None = None,
    max_batch: int = 16,
    opt_batch: int = 1,
    jobs: int | None = None,
    progress: bool = True,
    keep_float: str | list[str] | tuple[str, ...] = (),
    max_drop: float | None = None,
) -> Artifact | dict[str, Artifact]:
    """Exports a zoo model to one or several targets and verifies every step against PyTorch.

    Writes `out/<model>-<target>/` per target, holding the artifact, `labels.txt` and
    `manifest.json`. Nothing appears at that path unless its export finishes, and an existing
    folder is replaced only with `force`. Steps that several targets begin with run once.

    Args:
        model: zoo model name or alias.
        target: a target name (returns its Artifact), or several: a list, a comma-separated string,
            "all", a glob such as "tflite-*", or a family word such as "tflite" (returns a dict of
            Artifacts by target). Targets chosen by "all", a glob or a family word that cannot run
            here are skipped with their reason; targets named one by one must run.
        weights: None (random init), "imagenet" (offline), "verification" (edgekit's verification-only init,
            `edgekit.models.verification`) or a checkpoint path. A checkpoint written by `edgekit train` also
            gives the class count and names. None with an int8 target, for a model that has no offline weights
            but a verification init, means "verification": a random init cannot judge int8.
        calib: calibration images (folder) or preprocessed array (.npy); default: bundled photos.
        data: probe images (folder; labels from synsets in names or an ImageFolder layout).
        io_dtype: input/output tensor type of `tflite-int8`: "int8", "uint8" (MediaPipe) or "float32".
        tolerance: overrides of each target's final precision tolerance (atol, rtol, min_cosine, min_top1_agreement).
        workspace_mb, timing_cache: TensorRT builder workspace limit and timing cache file (default: one per
            GPU model and TensorRT version under ~/.cache/edgekit/tensorrt, reused by every build there).
        max_batch, opt_batch: the TensorRT optimization profile (1, opt, max) of a `dynamic_batch` engine.
        jobs: steps run side by side at most (default: 2, or 1 on a single core).
        keep_float: onnx-int8 layers (PyTorch module names, a list or comma-separated) kept in float, or "auto":
            the fewest convolutions in float that keep the top-1 loss on `data` within `max_drop` points.
            The artifact is then mixed precision, and its manifest lists every layer left in float.
        max_drop: the top-1 budget, in points, of `keep_float="auto"`.

    Raises:
        ParityError: (one target) a step missed its tolerance. The artifact is kept in
            `<model>-<target>.parity-failed/` and the error's `artifact` attribute points at it. Its subclass
            BudgetNotMetError: `keep_float="auto"` found no candidate within `max_drop` (no artifact).
        ExportFailures: (several targets) some failed; its `artifacts` and `errors` say which.
        ExportError, ExportBusyError, MissingBackendError, UsageError subclasses: see `edgekit.errors`.
    """
    names, by_pattern = resolve_targets(target)
    single = isinstance(target, str) and names == [target]
    targets = [get_target(name) for name in names]
    base = get_card(model)
    init_note = None
    if weights is None and _needs_verification_init(base, targets):
        weights = verification.KEYWORD
        init_note = (f"{base.name} has no offline weights and its random init cannot judge int8 (near-tie logits), so "
                     f"this export uses edgekit's verification init ({verification.summary(base)}). "
                     "Pass --weights CKPT to export your own.")
        if (other_size := verification.size_note(base, input_size)) is not None:
            init_note += f" At --input-size {input_size}: {other_size}"
    weights_file = str(weights_path(base, weights)) if weights is not None else None
    card = model_card(model, num_classes=num_classes, input_size=input_size, weights=weights_file)
    _check_options(targets, batch, dynamic_batch, io_dtype, calib, calib_size)
    keep_float = tuple(n.strip() for n in (keep_float.split(",") if isinstance(keep_float, str) else keep_float) if n.strip())
    check_keep_float([t.name for t in targets], keep_float, max_drop, data)
    if keep_float and keep_float != ("auto",):
        check_module_names(card, keep_float)
    if not timeout > 0:
        raise InvalidSpecError(f"--timeout must be a positive number of seconds, got {timeout}")
    if jobs is not None and jobs < 1:
        raise InvalidSpecError(f"--jobs must be at least 1, got {jobs}")
    check_engine_options(workspace_mb, max_batch, opt_batch)
    runnable, skipped, errors = _available(targets, by_pattern)
    if single and errors:
        raise errors[targets[0].name]
    if not runnable and not errors:  # a family or glob none of whose targets can run here: nothing to do is no success
        reasons = "; ".join(f"{name}: {reason}" for name, reason in skipped.items())
        raise MissingBackendError(f"none of the targets chosen by {target!r} can run here ({reasons})")
    out = prepare_out(out)
    for name in runnable:
        final = out / f"{card.name}-{name}"
        if final.exists() and not force:
            raise InvalidSpecError(f"{final} already exists; pass --force to replace it")
    spec = ExportSpec(card.name, ",".join(runnable), None if weights is None else str(weights), weights_file,
                      num_classes, input_size, batch, dynamic_batch, None, io_dtype, timeout, None if data is None else str(data),
                      workspace_mb, None if timing_cache is None else str(timing_cache), max_batch, opt_batch,
                      keep_float=keep_float, max_drop=max_drop,
                      new_head=replaced_head(card.name, weights_file, num_classes))
    progress_out = Progress(progress, 0)
    if init_note:
        progress_out.say(f"note: {init_note}")
    head = spec.new_head
    if head is not None:
        progress_out.say(f"note: {head['module']} is a new, untrained {head['classes']}-class head in place of the "
                         f"checkpoint's {head['checkpoint_classes']} classes (seeded init): this artifact's predictions "
                         f"mean nothing until it is trained. Fine-tune first (edgekit train {card.name} --data DIR) "
                         "and export the checkpoint it writes")
    for name, reason in skipped.items():
        progress_out.say(f"skipping {name}: {reason}")
    artifacts: dict[str, Artifact] = {}
    if runnable:
        run = _Run(card, spec, out, [get_target(n) for n in runnable], calib, calib_size, verify, tolerance or {},
                   force, jobs, progress_out)
        with interruptible():
            run.execute()
        artifacts, errors = run.artifacts, errors | run.errors
    if single:
        if errors:
            raise errors[names[0]]
        return artifacts[names[0]]
    _summary(progress_out, names, artifacts, errors, skipped)
    if errors:
        failed = ", ".join(f"{name} ({type(error).__name__})" for name, error in errors.items())
        rest = f"; the {len(artifacts)} others are in {out}" if artifacts else ""
        raise ExportFailures(f"{len(errors)} of {len(names) - len(skipped)} targets failed: {failed}{rest}",
                             artifacts, errors)
    return artifacts


def _needs_verification_init(card: ModelCard, targets: list[Target]) -> bool:
    """No weights were given, none exist offline, and an int8 target needs decisive logits to be judged."""
    return (card.offline_weights is None and verification.supported(card)
            and any(t.precision in ("int8", "int8-dynamic") for t in targets))


def _available(targets: list[Target], by_pattern: bool) -> tuple[list[str], dict[str, str], dict[str, EdgekitError]]:
    """Targets that can run here; those skipped (chosen by pattern) with reasons; those failed (named)."""
    runnable, skipped, errors = [], {}, {}
    for target in targets:
        reason = target.unavailable_reason()
        if reason is None:
            runnable.append(target.name)
        elif by_pattern:
            skipped[target.name] = reason
        else:
            errors[target.name] = MissingBackendError(f"target {target.name} is unavailable here: {reason}")
    return runnable, skipped, errors


@dataclass
class _Reference:
    """The probes and the PyTorch reference's logits on them, saved for the converter processes."""

    probes: Any
    logits: np.ndarray
    probes_file: Path
    logits_file: Path


@dataclass
class _Run:
    """One export run: the plan, its work folders, and what each node and target came to."""

    card: ModelCard
    spec: ExportSpec
    out: Path
    targets: list[Target]
    calib: str | Path | None
    calib_size: int
    verify: bool
    overrides: dict[str, Any]
    force: bool
    jobs: int | None
    progress: Progress
    artifacts: dict[str, Artifact] = field(default_factory=dict)
    errors: dict[str, EdgekitError] = field(default_factory=dict)
    records: dict[tuple, dict] = field(default_factory=dict)
    reports: dict[tuple, StepReport] = field(default_factory=dict)

    def execute(self) -> None:
        self.plan = build_plan(self.targets)
        sweep_stale(self.out)
        claims: dict[str, Path] = {}
        work = None
        branches = sum(1 for node in self.plan.nodes if not self.plan.children(node))  # steps that can run at once
        executor = Executor(min(self.jobs or min(2, os.cpu_count() or 1), branches), self.progress.say)
        try:
            for target in self.targets:
                claims[target.name] = claim(self.out / f".{self.card.name}-{target.name}.partial")
            work = claim(self.out / f".{self.card.name}.steps-{os.getpid()}.partial")
            self.claims, self.work = claims, work
            (work / "logs").mkdir()
            executor.warm(work, work / "logs" / "step-server.log")
            self._prepare(work)
            self._announce(executor.slots)
            self._run_nodes(executor)
        except OSError as exc:
            if is_disk_full(exc):
                raise disk_error(exc, self.out, self._needed_mb()) from exc
            raise
        finally:
            executor.stop_all()
            for folder in [work, *claims.values()]:
                if folder is not None and folder.exists():
                    remove(folder)

    def _prepare(self, work: Path) -> None:
        calibrated = any(t.calibrated for t in self.targets)
        self.calibration = load_calibration(self.card, self.calib, self.calib_size) if calibrated else None
        if self.calibration is not None:
            np.save(work / "calibration.npy", self.calibration.data)
            self.spec = dataclasses.replace(self.spec, calibration_file=str(work / "calibration.npy"))
        self.fp16_risk = None
        if any(t.fp16_risk_check for t in self.targets):
            self.fp16_risk, self.spec = _fp16_risk(self.spec, self.progress)
        self.base = Contract.from_card(self.card, batch=None if self.spec.dynamic_batch else self.spec.batch)
        self.reference = self._reference(work) if self.verify else None

    def _reference(self, work: Path) -> _Reference:
        model = create_model(self.spec.model, weights=self.spec.weights_file, num_classes=self.spec.num_classes)
        probes = build_probes(self.card, self.base, self.spec.data)
        with TorchRunner(model, self.base) as runner:
            logits = runner.infer(probes.reference)
        probes.save(work / "probes.npz")
        np.save(work / "reference.npy", logits)
        return _Reference(probes, logits, work / "probes.npz", work / "reference.npy")

    def _announce(self, slots: int) -> None:
        names = ", ".join(t.name for t in self.targets)
        shared = sum(1 for node in self.plan.nodes if len(node.targets) > 1)
        text = f"edgekit export {self.card.name} -> {names}"
        if len(self.targets) > 1:
            text += f" ({len(self.plan.nodes)} steps, {shared} shared, up to {slots} at a time)"
        self.progress.say(text)

    def _run_nodes(self, executor: Executor) -> None:
        self.numbers = {node.key: str(i) for i, node in enumerate(self.plan.nodes, start=1)}
        by_number = {number: node for node, number in zip(self.plan.nodes, self.numbers.values())}
        total = len(self.plan.nodes)
        ready = [node for node in self.plan.nodes if node.parent is None]
        while ready or executor.running:
            ready.sort(key=lambda n: -len(n.targets))
            while ready and executor.free:
                node = ready.pop(0)
                self.progress.say(f"  [{self.numbers[node.key]}/{total}] {node.step.name}{self._shared(node)} ...")
                executor.start(self._job(node, executor.slots))
            for done in executor.wait():
                node = by_number[done.job.key]
                ready += self._settle(node, done, f"[{done.job.key}/{total}]")

    def _shared(self, node: Node) -> str:
        return f" (shared by {', '.join(node.targets)})" if len(self.targets) > 1 and len(node.targets) > 1 else ""

    def _job(self, node: Node, slots: int) -> Job:
        step = node.step
        number = self.numbers[node.key]
        source = MODEL if node.source == MODEL else self.work / node.source
        verify = None
        if self.reference is not None:
            tolerance = TOLERANCES[step.precision]
            if node.final_for:
                tolerance = tolerance.replace(**self.overrides)
            if self.spec.weights is None and step.precision in ("int8", "int8-dynamic"):
                tolerance = dataclasses.replace(tolerance, unjudgeable=seeded.INT8_UNJUDGEABLE)
            verify = {"step": step.name, "probes": str(self.reference.probes_file),
                      "reference": str(self.reference.logits_file), "contract": self.base.to_dict(),
                      "tolerance": tolerance.to_dict(), "threads": max(1, (os.cpu_count() or 1) // slots)}
        log = self.work / "logs" / f"{number}-{step.output}.log"
        return Job(number, step.exporter, source, self.work / step.output, self.spec, log, verify, step.name)

    def _settle(self, node: Node, done: Done, tag: str) -> list[Node]:
        """Records a finished node, finishes the targets it completes or breaks; returns the nodes it unblocks."""
        if done.error is not None:
            self.progress.say(f"        {tag} FAILED: {str(done.error).splitlines()[0]}")
            for name in node.targets:
                kept = keep_log(done.job.log, self.out / f"{self.card.name}-{name}")
                self.errors[name] = _pointing_at(done.error, done.job.log, kept)
            return []
        report = done.report
        contract = contract_with(self.base, report.get("contract", {}))
        record = {"step": node.step.name, "output": node.step.output, "seconds": round(report["seconds"], 2),
                  "verify_seconds": round(report["verify_seconds"], 2) if "verify_seconds" in report else None,
                  "peak_rss_mb": round(report["peak_rss_mb"], 1), "threads": report.get("threads"),
                  "info": report.get("info", {}),
                  "notes": report.get("notes", []), "contract": contract.to_dict()}
        line = f"{tag} {record['seconds']:6.1f}s  peak {record['peak_rss_mb']:6.0f} MB"
        passed = True
        if "parity" in report:
            step_report = StepReport.from_dict(report["parity"])
            self.reports[node.key] = step_report
            passed = step_report.passed
            record["parity"] = "passed" if passed else "failed"
            line += (f"  {'ok' if passed else 'PARITY FAILED'} (checked in {record['verify_seconds']:.1f}s)"
                     f"  {step_report.summary()}")
        self.records[node.key] = record
        self.progress.say(f"        {line}")
        for note in record["notes"]:
            self.progress.say(f"        note: {note}")
        if not passed:
            for name in node.targets:
                self._finish(get_target(name), node, contract)
            return []
        for name in node.final_for:
            self._finish(get_target(name), node, contract)
        return self.plan.children(node)

    def _finish(self, target: Target, last: Node, contract: Contract) -> None:
        """Assembles one target's folder from the shared work folder and moves it into place."""
        folder = self.claims[target.name]
        chain = last.chain()
        step = last.step
        for name in (step.output, *step.companions):
            _link_or_copy(self.work / name, folder / name)
        labels = write_labels(folder, self.card)
        report = None
        if self.reference is not None:
            report = ParityReport(self.card.name, target.name, self.reference.probes.source,
                                  [self.reports[n.key] for n in chain])
            if target.calibrated:
                report.notes += probe_notes(self.card, self.spec.data, self.calib, self.calib_size)
            self.progress.say(f"  {target.name} probes: {report.probes}")
            for note in report.notes:
                self.progress.say(f"  note: {note}")
        status = "unverified" if report is None else ("verified" if report.passed else "parity-failed")
        manifest = _manifest(target, step, self.card, contract, self.spec, self.calibration,
                             [self.records[n.key] for n in chain], report, folder, labels, status)
        if self.fp16_risk is not None and target.fp16_risk_check:
            manifest["fp16_risk"] = self.fp16_risk
        final = self.out / f"{self.card.name}-{target.name}"
        try:
            self.artifacts[target.name] = finish(folder, final, manifest, report, self.force, self.progress)
        except ParityError as error:
            self.errors[target.name] = error

    def _needed_mb(self) -> float:
        return self.card.params * 4 / 1e6 * (len(self.plan.nodes) + 3) + 50


def _pointing_at(error: EdgekitError, log: Path, kept: Path | None) -> EdgekitError:
    """The error with its log path moved from the work folder, which is removed, to the log kept beside the output."""
    if kept is None or str(log) not in str(error):
        return error
    moved = type(error)(str(error).replace(str(log), str(kept)))
    moved.__cause__ = error.__cause__
    return moved


def _link_or_copy(source: Path, target: Path) -> None:
    if source.is_dir():
        shutil.copytree(source, target)
        return
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _summary(progress: Progress, names: list[str], artifacts: dict, errors: dict, skipped: dict) -> None:
    progress.say("summary:")
    for name in names:
        if name in artifacts:
            state = f"{artifacts[name].status:<14} {artifacts[name].directory}"
        elif name in errors:
            error = errors[name]
            label = ("budget-not-met" if isinstance(error, BudgetNotMetError)
                     else "parity-failed" if isinstance(error, ParityError) else "failed")
            state = f"{label:<14} exit {error.exit_code}: {str(error).splitlines()[0][:150]}"
        else:
            state = f"{'skipped':<14} {skipped.get(name, '')[:150]}"
        progress.say(f"  {name:<24} {state}")


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


def _check_options(targets: list[Target], batch: int, dynamic_batch: bool, io_dtype: str, calib,
                   calib_size: int) -> None:
    names = [t.name for t in targets]
    if batch < 1:
        raise InvalidSpecError(f"--batch must be at least 1, got {batch}")
    fixed = [t.name for t in targets if not t.supports_dynamic_batch]
    if dynamic_batch and fixed:
        raise InvalidSpecError(f"--dynamic-batch is not supported by {', '.join(fixed)}; export a static batch (--batch N)")
    if dynamic_batch and batch != 1:
        raise InvalidSpecError("--dynamic-batch and --batch N conflict: a dynamic batch has no fixed size")
    if io_dtype not in IO_DTYPES:
        raise InvalidSpecError(f"--io-dtype must be one of {IO_DTYPES}, got {io_dtype!r}")
    if io_dtype != "uint8" and "tflite-int8" not in names:
        raise InvalidSpecError(f"--io-dtype applies to tflite-int8 only, not {', '.join(names)}")
    if calib is not None and not any(t.calibrated for t in targets):
        raise InvalidSpecError(f"--calib applies to calibrated targets only; {', '.join(names)} use no calibration")
    if calib_size < 1:
        raise InvalidSpecError(f"--calib-size must be at least 1, got {calib_size}")


def check_backends(target: Target) -> None:
    """Raises MissingBackendError naming what `target` lacks here, and how to install it."""
    reason = target.unavailable_reason()
    if reason:
        raise MissingBackendError(f"target {target.name} is unavailable here: {reason}")


def _description(target: Target, records) -> str:
    # The last step that records its float layers speaks for the artifact (openvino-int8 converts onnx-int8's file).
    kept = next((record["info"]["keep_float"] for record in reversed(records) if record.get("info", {}).get("keep_float")), {})
    if not kept:
        return target.description
    return f"{target.description}; mixed precision, not full-integer: {len(kept)} layer(s) kept in float"


def _init_record(spec: ExportSpec, card: ModelCard) -> dict:
    """How the weights were made, where edgekit made them: the verification init, the seeded random init, or a new
    untrained head in place of the checkpoint's."""
    if spec.weights == verification.KEYWORD:
        return {"init": verification.describe(card)}
    if spec.weights is None:
        return {"init": seeded.describe()}
    return {} if spec.new_head is None else {"new_head": spec.new_head}


def _manifest(target: Target, step, card: ModelCard, contract: Contract, spec: ExportSpec, calibration, records,
              report: ParityReport | None, folder: Path, labels: str, status: str) -> dict[str, Any]:
    artifact_file = folder / step.output
    return {
        "edgekit_manifest": 1,
        "created": now(),
        "status": status,
        "model": card.name,
        "target": target.name,
        "description": _description(target, records),
        "precision": step.precision,
        "artifact": {"file": artifact_file.name, "bytes": artifact_file.stat().st_size,
                     "sha256": sha256_file(artifact_file),
                     "companions": [{"file": name, "bytes": (folder / name).stat().st_size,
                                     "sha256": sha256_file(folder / name)} for name in step.companions]},
        "labels": labels,
        "card": card.to_dict(),
        "contract": contract.to_dict(),
        "weights": {"source": spec.weights,
                    "sha256": None if spec.weights_file is None else sha256_file(spec.weights_file),
                    **_init_record(spec, card)},
        "calibration": None if calibration is None or not target.calibrated else calibration.to_dict(),
        "export": {"batch": spec.batch, "dynamic_batch": spec.dynamic_batch, "input_size": card.input_size,
                   "num_classes": card.num_classes, "io_dtype": spec.io_dtype if target.name == "tflite-int8" else None,
                   "data": spec.data},
        "notes": list(target.notes) + [n for r in records for n in r["notes"]],
        "steps": records,
        "tools": tool_versions(),
        "parity": None if report is None else report.to_dict(),
    }
