"""The verifier: compares an artifact's runner with the PyTorch reference on the same probes."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgekit.runners.base import Runner
from edgekit.parity.metrics import DECISIVE_MARGIN, TOLERANCES, Metrics, Tolerance, compute, failures
from edgekit.parity.probes import Probes, build_probes

__all__ = ["DECISIVE_MARGIN", "ParityReport", "Probes", "StepReport", "TOLERANCES", "Tolerance", "build_probes", "check"]

COUNTING = (
    f"top-1 agreement counts probes whose reference top-1 leads the runner-up by at least "
    f"{DECISIVE_MARGIN:.0%} of that probe's logit range (fp32: by more than twice the allowed element error); "
    f"near ties are reported, not counted; top1_agreement_all counts every probe, near ties included. "
    f"Cosine is averaged over probes."
)


@dataclass
class StepReport:
    """Parity of one pipeline step against the PyTorch reference."""

    step: str
    artifact: str
    runner: str
    tolerance: Tolerance
    metrics: Metrics
    by_kind: dict[str, Metrics]
    failures: list[str]
    gated_on: str

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step, "artifact": self.artifact, "runner": self.runner, "passed": self.passed,
            "failures": self.failures, "gated_on": self.gated_on, "tolerance": self.tolerance.to_dict(),
            "metrics": self.metrics.to_dict(), "by_kind": {k: m.to_dict() for k, m in self.by_kind.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepReport:
        """The report back from `to_dict` (a converter process verifies its own output and sends this)."""
        return cls(data["step"], data["artifact"], data["runner"], Tolerance(**data["tolerance"]),
                   Metrics(**data["metrics"]), {k: Metrics(**m) for k, m in data["by_kind"].items()},
                   list(data["failures"]), data["gated_on"])

    @property
    def gate(self) -> Metrics:
        """The figures the step was judged on: the photos' for quantized precisions, else all probes'."""
        return self.by_kind["image"] if self.gated_on.startswith("photos") else self.metrics

    def summary(self) -> str:
        m, g = self.metrics, self.gate
        agreement = "n/a" if g.top1_agreement is None else f"{g.top1_agreement:.1%} of {g.decisive_probes} decisive"
        photos = self.by_kind.get("image")
        if photos is not None and photos.top1_agreement_all is not None:
            agreement += f", {photos.top1_agreement_all:.1%} of all {photos.probes} photos"
        text = (f"max|d| {m.max_abs:.2e}  rel {m.rel_err:.2e}  cos {m.cosine_mean:.5f} (min {m.cosine_min:.5f})  "
                f"top-1 {agreement}  top-5 overlap {m.top5_overlap:.1%}")
        if m.accuracy:
            text += f"  acc {m.accuracy['reference_top1']:.1%} -> {m.accuracy['artifact_top1']:.1%}"
        return text


@dataclass
class ParityReport:
    """Parity of every step of an export."""

    model: str
    target: str
    probes: str
    steps: list[StepReport] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(step.passed for step in self.steps)

    @property
    def failed_step(self) -> StepReport | None:
        return next((step for step in self.steps if not step.passed), None)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "target": self.target, "passed": self.passed, "probes": self.probes,
                "counting": COUNTING, "notes": self.notes, "steps": [s.to_dict() for s in self.steps]}

    def describe_failure(self) -> str:
        step = self.failed_step
        if step is None:
            return "all steps passed"
        return f"parity broke at step '{step.step}' ({step.artifact}): " + "; ".join(step.failures)


def _not_compared(step: str, runner: Runner, probes: Probes, tolerance: Tolerance, message: str) -> StepReport:
    nan = float("nan")
    metrics = Metrics(len(probes.kinds), nan, nan, nan, nan, nan, None, 0, nan)
    return StepReport(step, runner.path.name, runner.name, tolerance, metrics, {}, [message], "not run")


def check(step: str, runner: Runner, reference_logits: np.ndarray, probes: Probes, tolerance: Tolerance) -> StepReport:
    """Runs `runner` on the probes and holds its logits to `tolerance` against the reference's.

    Every precision is gated on all probes; quantized precisions (whose scales come from real
    photos) are gated on the photos, and their figures on random tensors are reported beside.
    """
    try:
        with runner:
            actual = runner.infer(probes.artifact)
    except Exception as exc:  # any runtime's load or run error means the artifact cannot be used as exported
        last = (str(exc).strip().splitlines() or [""])[-1]
        return _not_compared(step, runner, probes, tolerance,
                             f"{runner.name} could not run the artifact: {type(exc).__name__}: {last}")
    if actual.shape != reference_logits.shape:
        return _not_compared(step, runner, probes, tolerance,
                             f"the artifact outputs shape {tuple(actual.shape)} where the reference outputs "
                             f"{tuple(reference_logits.shape)}: it is not the model its manifest names")
    labels = probes.labels
    overall = compute(reference_logits, actual, tolerance, labels)
    by_kind = {}
    for kind in np.unique(probes.kinds):
        mask = probes.select(kind)
        by_kind[str(kind)] = compute(reference_logits[mask], actual[mask], tolerance, labels[mask])
    quantized = tolerance.precision.startswith("int8")
    gated_on = "image" if quantized and "image" in by_kind else "all"
    gate = overall if gated_on == "all" else by_kind["image"]
    held = tolerance if probes.own_photos else dataclasses.replace(tolerance, min_top1_agreement_all=None)
    text = "all probes"
    if gated_on == "image":
        text = "photos only (random tensors reported)"
        if tolerance.min_top1_agreement_all is not None:
            text += ("; agreement over all photos gated (your --data)" if probes.own_photos else
                     "; agreement over all photos reported, gated only on your --data (most bundled photos are near ties)")
    return StepReport(step, runner.path.name, runner.name, tolerance, overall, by_kind, failures(gate, held), text)

