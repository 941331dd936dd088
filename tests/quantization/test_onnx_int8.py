"""onnx-int8 computes what its QDQ graph defines on the CPU that runs the suite, and bias correction helps."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.calibration import probe_views
from edgekit.models import get_card


def _logits(path, inputs: np.ndarray, fused: bool) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if not fused:  # DequantizeLinear -> float op -> QuantizeLinear: the graph's definition, no int8 kernel
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {"input": x[None]})[0] for x in inputs])


@pytest.mark.slow
@pytest.mark.xdist_group("mobilenet_v2")
def test_int8_kernels_compute_the_qdq_definition_on_this_cpu(exported) -> None:
    """ONNX Runtime's fused U8S8 kernels saturate 16-bit pair sums on x86 CPUs without VNNI when weights use the
    full int8 range (84% agreement where the definition gives 96%, on an AVX2 Zen 3). The 7-bit weights must
    leave nothing to saturate: fused and unfused runs differ only by requantization rounding."""
    artifact = exported("mobilenet_v2", "onnx-int8", weights="imagenet")
    probes = probe_views(get_card("mobilenet_v2"))
    fused, definition = _logits(artifact.file, probes, True), _logits(artifact.file, probes, False)
    spread = float(np.ptp(definition))
    assert np.max(np.abs(fused - definition)) < 0.1 * spread
    assert np.mean(fused.argmax(1) == definition.argmax(1)) >= 0.95
    info = artifact.manifest["steps"][-1]["info"]
    assert "7-bit" in info["format"] and info["bias_correction"]["convs_corrected"] == 52


def test_bias_correction_removes_the_weight_rounding_shift(tmp_path) -> None:
    """On a real quantized mobilenet_v2 block, the corrected biases bring the int8 output's per-channel mean
    error on the calibration inputs well below the uncorrected one."""
    import onnx
    import torch
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from edgekit.models import create_model
    from edgekit.quantization.bias_correction.onnx import conv_input_means, correct_biases

    block = torch.nn.Sequential(*create_model("mobilenet_v2", weights="imagenet").features[:4]).eval()
    data = probe_views(get_card("mobilenet_v2"))[:24]
    float_model = tmp_path / "block.onnx"
    torch.onnx.export(block, (torch.from_numpy(data[:1]),), str(float_model), dynamo=False, input_names=["input"],
                      output_names=["out"], opset_version=17)

    class Reader:
        def __init__(self) -> None:
            self.samples = iter(data)

        def get_next(self):
            sample = next(self.samples, None)
            return None if sample is None else {"input": sample[None]}

    quantized = tmp_path / "block.int8.onnx"
    quantize_static(str(float_model), str(quantized), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)
    reference = _logits(float_model, data, True)
    before = _logits(quantized, data, False)
    info = correct_biases(float_model, quantized, conv_input_means(float_model, data, "input"))
    after = _logits(quantized, data, False)
    assert info["convs_corrected"] == sum(n.op_type == "Conv" for n in onnx.load(str(float_model)).graph.node)

    def channel_bias(out: np.ndarray) -> float:
        return float(np.mean(np.abs((out - reference).mean(axis=(0, 2, 3)))))

    assert channel_bias(after) < 0.7 * channel_bias(before)
