"""Probes are never the calibration inputs, and the report says what they were."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from edgekit import calibration
from edgekit.contract import Contract
from edgekit.models import get_card
from edgekit.parity import TOLERANCES, build_probes
from edgekit.parity.metrics import compute
from edgekit.parity.probes import probe_notes

CARD = get_card("mobilenet_v2")


def test_default_probes_are_views_calibration_never_uses() -> None:
    assert not set(calibration.VIEWS) & set(calibration.PROBE_VIEWS)
    probes = build_probes(CARD, Contract.from_card(CARD))
    photos = probes.reference[probes.kinds == "image"]
    calibrated = calibration.load_calibration(CARD).data
    assert len(photos) == len(calibration.PROBE_VIEWS) * len(calibration.bundled_images())
    closest = min(float(np.abs(calibrated - photo).max()) for photo in photos)
    assert closest > 0.5, "a probe equals a calibration input"
    assert "calibration never uses" in probes.source


def test_report_warns_when_data_and_calib_share_files(tmp_path: Path) -> None:
    photos = calibration.bundled_images()
    calib, data = tmp_path / "calib", tmp_path / "data"
    calib.mkdir(), data.mkdir()
    for photo in photos[:4]:
        shutil.copy(photo, calib / photo.name)
    for photo in photos[3:6]:
        shutil.copy(photo, data / f"copy-{photo.name}")  # same bytes under another name
    notes = probe_notes(CARD, data, calib, calib_size=40)
    assert len(notes) == 1 and notes[0].startswith("1 of the --data images also calibrated")
    assert probe_notes(CARD, data, calib, calib_size=3) == []  # the shared photo is past the calibration size
    assert "never uses" in probe_notes(CARD, None, None, 40)[0]


def test_agreement_over_all_probes_counts_near_ties() -> None:
    reference = np.array([[10.0, 0.0, 0.0], [5.0, 4.99, 0.0], [0.0, 9.0, 1.0], [3.0, 3.01, 0.0]])
    actual = np.array([[9.0, 0.5, 0.0], [4.9, 5.0, 0.0], [0.0, 8.0, 1.0], [3.0, 2.9, 0.0]])
    metrics = compute(reference, actual, TOLERANCES["int8"])
    assert metrics.decisive_probes == 2 and metrics.top1_agreement == 1.0
    assert metrics.top1_agreement_all == 0.5
