"""The FP16 risk check flags layers that leave FP16's range and predicts the parity an FP16 engine reaches."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edgekit.fp16 import FP16_MAX, check_fp16
from edgekit.models import create_model


@pytest.mark.slow
def test_trained_mobilenet_is_safe_in_fp16() -> None:
    report = check_fp16("mobilenet_v2", weights="imagenet")
    assert report.passed and not report.keep_fp32()
    assert report.emulated["images"]["cosine_mean"] > 0.9999
    assert report.worst.absmax < FP16_MAX / 16


@pytest.mark.slow
def test_a_layer_past_fp16_range_is_flagged_and_breaks_emulation(tmp_path: Path) -> None:
    model = create_model("shufflenet_v2_cifar_x0_5")
    with torch.no_grad():
        model.conv5[1].bias.add_(1e5)  # the final BatchNorm now outputs values far beyond 65504
    torch.save(model.state_dict(), tmp_path / "hot.pth")
    report = check_fp16("shufflenet_v2_cifar_x0_5", weights=tmp_path / "hot.pth")
    assert not report.passed
    assert any("NaN or Inf" in f or "cosine" in f for f in report.failures)
    assert report.worst.name in ("conv5.1", "conv5.2") and report.worst.absmax > FP16_MAX
    assert "conv5.1" in report.keep_fp32()
