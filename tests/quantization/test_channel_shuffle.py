"""Channel shuffles of a real QDQ ShuffleNetV2 become Gathers: the same numbers, fewer layout Transposes."""

from __future__ import annotations

import shutil
from collections import Counter

import numpy as np
import pytest

from edgekit.calibration import probe_views
from edgekit.models import get_card


def _run(path, inputs: np.ndarray, fused: bool, optimized=None, batch: int = 1) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if not fused:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if optimized is not None:
        options.optimized_model_filepath = str(optimized)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {"input": inputs[i:i + batch]})[0] for i in range(0, len(inputs), batch)])


def _ops(path) -> Counter:
    import onnx

    return Counter(node.op_type for node in onnx.load(str(path)).graph.node)


@pytest.fixture(scope="module", params=[False, True], ids=["fixed-batch", "dynamic-batch"])
def quantized(tmp_path_factory, request):
    """shufflenet_v2_x0_5 exported by edgekit (fp32 ONNX, simplified), then quantized by ONNX Runtime as QDQ U8S8."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from edgekit import export

    folder = tmp_path_factory.mktemp("shuffle")
    artifact = export("shufflenet_v2_x0_5", "onnx", out=folder, dynamic_batch=request.param, progress=False)
    data = probe_views(get_card("shufflenet_v2_x0_5"))
    samples = iter(data[:16])

    class Reader:
        def get_next(self):
            sample = next(samples, None)
            return None if sample is None else {"input": sample[None]}

    path = folder / "model.int8.onnx"
    quantize_static(str(artifact.file), str(path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)
    return path, data[16:40], 3 if request.param else 1


def test_shuffles_become_gathers_with_identical_outputs_and_fewer_transposes(quantized, tmp_path) -> None:
    from edgekit.quantization.channel_shuffle import shuffles_as_gathers

    original, inputs, batch = quantized
    rewritten = tmp_path / "gathers.onnx"
    shutil.copy(original, rewritten)
    assert shuffles_as_gathers(rewritten) == 16  # 3 + 7 + 3 blocks, one shuffle each
    ops = _ops(rewritten)
    assert ops["Transpose"] == ops["Reshape"] == ops["Slice"] == 0 and ops["Gather"] == 16 + 13
    for fused in (True, False):  # ONNX Runtime's int8 kernels, and the QDQ definition
        assert np.array_equal(_run(original, inputs, fused, batch=batch), _run(rewritten, inputs, fused, batch=batch))
    _run(original, inputs[:1], True, tmp_path / "before.opt.onnx")
    _run(rewritten, inputs[:1], True, tmp_path / "after.opt.onnx")
    before, after = _ops(tmp_path / "before.opt.onnx")["Transpose"], _ops(tmp_path / "after.opt.onnx")["Transpose"]
    assert after <= before - 10, (before, after)


def test_a_shuffle_whose_quantization_would_round_is_left_alone(quantized, tmp_path) -> None:
    """A Q/DQ pair inside the chain with its own scale rounds the values: no Gather may replace it."""
    import onnx
    from onnx import numpy_helper

    from edgekit.quantization.channel_shuffle import shuffles_as_gathers

    original, inputs, _ = quantized
    model = onnx.load(str(original))
    transpose = next(node for node in model.graph.node if node.op_type == "Transpose")
    quantize = next(node for node in model.graph.node if node.op_type == "QuantizeLinear"
                    and node.input[0] == transpose.output[0])
    scales = {t.name: t for t in model.graph.initializer}
    scale = numpy_helper.to_array(scales[quantize.input[1]])
    model.graph.initializer.append(numpy_helper.from_array((scale * 2).astype(scale.dtype), "doubled_scale"))
    quantize.input[1] = "doubled_scale"
    changed = tmp_path / "changed.onnx"
    onnx.save(model, str(changed))
    expected = _run(changed, inputs, False)
    assert shuffles_as_gathers(changed) == 15
    assert np.array_equal(_run(changed, inputs, False), expected)
