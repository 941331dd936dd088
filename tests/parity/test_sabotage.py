"""Deliberately wrong artifacts: the verifier must reject every one, and pass the right one beside it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from edgekit.contract import Contract
from edgekit.models import create_model, get_card
from edgekit.parity import TOLERANCES, build_probes, check
from edgekit.runners import runner_for
from edgekit.runners.torch_runner import TorchRunner
from edgekit.pipeline.spec import ExportSpec
from tests.conftest import linked_photos

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("mobilenet_v2")]
MODEL = "mobilenet_v2"


def verdict(artifact: Path, contract: Contract, precision: str = "fp32", data: Path | None = None):
    """Checks an artifact file against the ImageNet-trained reference, on the default probes or `data`."""
    card = get_card(MODEL)
    probes = build_probes(card, contract, data)
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


def minmax_int8(fp32: Path, calibration: np.ndarray, out: Path) -> Path:
    """Int8 by ONNX Runtime's plain MinMax with the logits range widened 1.5x: edgekit's onnx-int8 until issue 9.

    Weights on the 7-bit range, as edgekit's own: with full-range weights ONNX Runtime's int8 kernels saturate on
    x86 CPUs without VNNI, and the artifact would be wrong for that reason instead of for its ranges.
    """
    import onnxruntime
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from edgekit.exporters._headroom import widen

    session = onnxruntime.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
    logits = np.concatenate([session.run(None, {"input": sample[None]})[0] for sample in calibration])
    low, high = widen(float(logits.min()), float(logits.max()))
    prepared = out.with_suffix(".prep.onnx")
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    quantize_static(str(prepared), str(out), _Samples(calibration), quant_format=QuantFormat.QDQ, per_channel=True,
                    reduce_range=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax,
                    extra_options={"TensorQuantOverrides": {"logits": [{"rmin": np.float32(low), "rmax": np.float32(high)}]}})
    return out


def test_int8_calibrated_on_noise_is_rejected(exported, onnx_artifact, tmp_path: Path) -> None:
    """Plain MinMax calibrated on noise keeps cosine 0.98 and breaks top-1. (edgekit's own onnx-int8 calibrated on
    noise is no longer wrong: its moving-average ranges and fp32 classifier agree on 95% of decisive probes.)"""
    right = exported(MODEL, "onnx-int8", weights="imagenet")
    assert right.status == "verified"
    path, contract = onnx_artifact
    noise = np.random.default_rng(0).standard_normal((40, 3, 224, 224), dtype=np.float32)
    report = verdict(minmax_int8(path, noise, tmp_path / "noise.onnx"), contract, "int8")
    assert not report.passed
    assert any("top-1 agreement" in f for f in report.failures)
    assert report.by_kind["image"].top1_agreement < 0.8


def test_int8_that_loses_agreement_on_real_photos_is_rejected(exported, onnx_artifact, imagenet_sample: Path,
                                                              tmp_path: Path) -> None:
    """Plain MinMax on the bundled photos agrees with fp32 on 91.4% of the 500 ImageNet photos and on 97.7% of the
    385 decisive ones: only the figure over all photos rejects it. The right export beside it verifies (96.8%).

    All 500, not a half: 250 photos could not separate the two reliably before bias correction (right 94.8% and
    wrong 94.0% on the odd half, 2026-12-02).
    """
    from edgekit.calibration import load_calibration

    photos = linked_photos(tmp_path / "photos", sorted(imagenet_sample.iterdir()))  # all 500
    right = exported(MODEL, "onnx-int8", weights="imagenet", data=str(photos))
    assert right.status == "verified"
    path, contract = onnx_artifact
    wrong = minmax_int8(path, load_calibration(get_card(MODEL)).data, tmp_path / "minmax.onnx")
    report = verdict(wrong, contract, "int8", photos)
    assert not report.passed
    assert report.by_kind["image"].top1_agreement >= TOLERANCES["int8"].min_top1_agreement  # decisive alone passes
    assert any("over all 500 photo probes" in f for f in report.failures)


class _Samples:
    """Feeds ONNX Runtime's calibrator one sample at a time."""

    def __init__(self, data: np.ndarray) -> None:
        self.samples = iter(data)

    def get_next(self):
        sample = next(self.samples, None)
        return None if sample is None else {"input": sample[None]}
