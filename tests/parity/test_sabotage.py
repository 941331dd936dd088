"""Deliberately wrong artifacts: the verifier must reject every one, and pass the right one beside it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from edgekit.contract import Contract
from edgekit.errors import ParityError
from edgekit.models import create_model, get_card
from edgekit.parity import TOLERANCES, build_probes, check
from edgekit.runners import runner_for
from edgekit.runners.torch_runner import TorchRunner
from edgekit.pipeline.spec import ExportSpec

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("mobilenet_v2")]
MODEL = "mobilenet_v2"


def verdict(artifact: Path, contract: Contract, precision: str = "fp32"):
    """Checks an artifact file against the ImageNet-trained reference, on the default probes."""
    card = get_card(MODEL)
    probes = build_probes(card, contract)
    with TorchRunner(create_model(MODEL, weights="imagenet"), Contract.from_card(card)) as runner:
        reference = runner.infer(probes.reference)
    return check("sabotage", runner_for(artifact, contract), reference, probes, TOLERANCES[precision])


@pytest.fixture(scope="module")
def onnx_artifact(exported):
    artifact = exported(MODEL, "onnx", weights="imagenet")
    return artifact.file, Contract.from_dict(artifact.manifest["contract"])


def test_control_right_artifact_passes(onnx_artifact) -> None:
    assert verdict(*onnx_artifact).passed


def test_one_changed_weight_is_rejected(onnx_artifact, tmp_path: Path) -> None:
    path, contract = onnx_artifact
    model = onnx.load(str(path))
    weights = max(model.graph.initializer, key=lambda t: np.prod(t.dims))  # the classifier
    array = numpy_helper.to_array(weights).copy()
    array.flat[0] += 0.5
    weights.CopyFrom(numpy_helper.from_array(array, weights.name))
    onnx.save(model, str(tmp_path / "one-weight.onnx"))
    report = verdict(tmp_path / "one-weight.onnx", contract)
    assert not report.passed
    assert any("output elements exceed atol" in f for f in report.failures)


def test_rgb_bgr_swap_is_rejected(tmp_path: Path) -> None:
    from edgekit.exporters.onnx import export_onnx

    class SwapsChannels(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x.flip(1))

    spec = ExportSpec(MODEL, "onnx")
    export_onnx(SwapsChannels(create_model(MODEL, weights="imagenet")), spec, tmp_path / "bgr.onnx")
    report = verdict(tmp_path / "bgr.onnx", Contract.from_card(get_card(MODEL)))
    assert not report.passed
    assert report.metrics.failed_elements > 1000


def test_nhwc_data_fed_as_nchw_is_rejected(exported) -> None:
    artifact = exported(MODEL, "tflite-fp32", weights="imagenet")
    right = Contract.from_dict(artifact.manifest["contract"])
    assert right.layout == "NHWC" and verdict(artifact.file, right).passed
    report = verdict(artifact.file, right.replace(layout="NCHW"))
    assert not report.passed
    assert report.metrics.cosine_mean < 0.9


def test_wrong_mean_std_is_rejected(onnx_artifact) -> None:
    path, contract = onnx_artifact
    report = verdict(path, contract.replace(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)))
    assert not report.passed
    assert report.by_kind["image"].failed_elements > 0
    assert report.by_kind["random"].failed_elements == 0  # random probes skip preprocessing: only photos catch it


def test_int8_calibrated_on_noise_is_rejected(exported, tmp_path: Path) -> None:
    right = exported(MODEL, "onnx-int8", weights="imagenet")
    assert right.status == "verified"
    noise = np.random.default_rng(0).standard_normal((40, 3, 224, 224), dtype=np.float32)
    np.save(tmp_path / "noise.npy", noise)
    with pytest.raises(ParityError, match="top-1 agreement") as info:
        exported(MODEL, "onnx-int8", weights="imagenet", calib=str(tmp_path / "noise.npy"))
    failed = info.value.artifact
    assert failed.directory.name.endswith(".parity-failed")
    assert failed.manifest["status"] == "parity-failed"
    assert failed.report.steps[-1].metrics.top1_agreement < 0.8
