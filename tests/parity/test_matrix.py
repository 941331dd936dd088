"""The release parity suite (`make parity`): every model through every target, verified.

Runs with `-m parity`; shard with `--shard i/n`. The default suite keeps the coverage test.
"""

from __future__ import annotations

import pytest

from edgekit.errors import ParityError
from edgekit.models import get_card
from edgekit.targets import get_target
from tests.parity.conftest import record_cell
from tests.parity.matrix import ALL_PAIRS, KNOWN_FAILURES, KNOWN_FAILURES_WITHOUT_VNNI, MATRIX, UNSUPPORTED


def test_every_pair_is_tested_or_listed_unsupported_with_a_reason() -> None:
    assert sorted(MATRIX + list(UNSUPPORTED)) == sorted(ALL_PAIRS)
    assert all(reason.strip() for reason in UNSUPPORTED.values())
    assert not set(UNSUPPORTED) - set(ALL_PAIRS), "an unsupported pair names no real model or target"
    assert set(KNOWN_FAILURES) | set(KNOWN_FAILURES_WITHOUT_VNNI) <= set(MATRIX), "a known failure must be a tested pair"


@pytest.mark.parity
@pytest.mark.parametrize("model, target", [
    pytest.param(m, t, id=f"{m}-{t}", marks=[pytest.mark.xdist_group(m)] + (
        [pytest.mark.xfail(raises=ParityError, strict=True, reason=KNOWN_FAILURES[m, t])] if (m, t) in KNOWN_FAILURES else []))
    for m, t in MATRIX])
def test_pair_verifies(exported, model: str, target: str) -> None:
    """Each model's targets are exported in one multi-target run (the `exported` fixture), sharing their steps."""
    reason = get_target(target).unavailable_reason()
    if reason:
        record_cell(model, target, {"status": "unavailable", "reason": reason})
        pytest.skip(f"{target} is unavailable here: {reason}")
    weights = "imagenet" if get_card(model).offline_weights else None
    try:
        artifact = exported(model, target, weights=weights)
    except ParityError as exc:
        record_cell(model, target, {"status": "parity-failed", "figure": str(exc)[:200]})
        raise
    metrics = artifact.report.steps[-1].gate
    figure = (f"max {metrics.max_abs:.1e}" if artifact.manifest["precision"] == "fp32"
              else f"agree {metrics.top1_agreement:.1%} of {metrics.decisive_probes}" if metrics.top1_agreement is not None
              else f"cos {metrics.cosine_mean:.4f}")
    record_cell(model, target, {"status": "ok", "figure": figure,
                                "weights": artifact.manifest["weights"]["source"] or "seeded random",
                                "bytes": artifact.manifest["artifact"]["bytes"],
                                "steps": [[s["step"], s["seconds"], s.get("verify_seconds")]
                                          for s in artifact.manifest["steps"]]})
