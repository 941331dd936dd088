"""Probes that cannot tell a right artifact from one that ignores its input must fail, and seeded models must not need to."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgekit.calibration import probe_views
from edgekit.models import create_model, get_card, list_models
from edgekit.parity.metrics import TOLERANCES, compute, failures

SEEDED = [name for name in list_models() if get_card(name).offline_weights is None]


def test_logits_that_hardly_differ_between_probes_fail_as_undecidable() -> None:
    rng = np.random.default_rng(0)
    row = rng.standard_normal((1, 1000))
    row[0, 7] += 10  # a decisive top-1, the same on every probe
    flat = row + rng.standard_normal((40, 1000)) * 1e-7
    for precision in ("fp32", "int8"):
        metrics = compute(flat, flat.copy(), TOLERANCES[precision])
        assert metrics.blind_passes
        assert any("ignores its input" in reason for reason in failures(metrics, TOLERANCES[precision]))


def test_logits_that_follow_the_probes_do_not_trip_the_blind_check() -> None:
    logits = np.random.default_rng(1).standard_normal((40, 1000)) * 3
    metrics = compute(logits, logits.copy(), TOLERANCES["fp32"])
    assert not metrics.blind_passes and not failures(metrics, TOLERANCES["fp32"])


@pytest.mark.parametrize("name", SEEDED)
def test_seeded_init_logits_follow_the_photo(name: str) -> None:
    """With drawn BatchNorm statistics (the init before version 2) BGR input passed the fp32 check of 8 of these."""
    model = create_model(name)
    photos = torch.from_numpy(probe_views(get_card(name))[:16])
    with torch.no_grad():
        reference, swapped = model(photos).numpy(), model(photos.flip(1)).numpy()
    assert np.abs(reference - reference.mean(0)).max() > 0.1
    metrics = compute(reference, swapped, TOLERANCES["fp32"])
    assert not metrics.blind_passes
    assert failures(metrics, TOLERANCES["fp32"])
