"""Bias correction of an ONNX Runtime QDQ model (see the package docstring)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.quantization.bias_correction import output_shift


def conv_input_means(float_model: Path, data: np.ndarray, input_name: str) -> dict[str, np.ndarray]:
    """The mean of every Conv input per channel over `data`, by Conv node name, from the float model."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(float_model))
    convs = [node for node in model.graph.node if node.op_type == "Conv"]
    tensors = list(dict.fromkeys(node.input[0] for node in convs))
    outputs = {output.name for output in model.graph.output}
    model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(name) for name in tensors if name not in outputs)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    batch = session.get_inputs()[0].shape[0]
    size = batch if isinstance(batch, int) else 1
    sums: list = [0.0] * len(tensors)
    count = 0
    for start in range(0, len(data) - size + 1, size):
        values = session.run(tensors, {input_name: data[start:start + size]})
        sums = [total + value.astype(np.float64).mean(axis=(0, 2, 3)) for total, value in zip(sums, values)]
        count += 1
    means = {name: total / max(count, 1) for name, total in zip(tensors, sums)}
    return {node.name: means[node.input[0]] for node in convs}


def correct_biases(float_model: Path, qdq_model: Path, means: dict[str, np.ndarray]) -> dict:
    """Removes each quantized Conv's mean weight-rounding shift from its int32 bias, rewriting `qdq_model` in place.

    Convs left in float, or without a bias, are skipped. Returns what was done, for the manifest.
    """
    import onnx
    from onnx import numpy_helper

    reference = onnx.load(str(float_model)).graph
    float_weights = {node.name: node.input[1] for node in reference.node if node.op_type == "Conv"}
    float_init = {init.name: init for init in reference.initializer}
    model = onnx.load(str(qdq_model))
    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    producer = {output: node for node in graph.node for output in node.output}
    corrected, largest = 0, 0.0
    for node in graph.node:
        if node.op_type != "Conv" or node.name not in means or len(node.input) < 3:
            continue
        weight_dq, bias_dq = producer.get(node.input[1]), producer.get(node.input[2])
        if not (_dequantizes_initializer(weight_dq, inits) and _dequantizes_initializer(bias_dq, inits)):
            continue
        weights = numpy_helper.to_array(float_init[float_weights[node.name]]).astype(np.float64)
        rounding = _dequantized(weight_dq, inits).reshape(weights.shape) - weights
        shift = output_shift(rounding, means[node.name], _group(node))
        bias_q = numpy_helper.to_array(inits[bias_dq.input[0]]).astype(np.float64)
        scale = np.broadcast_to(numpy_helper.to_array(inits[bias_dq.input[1]]).astype(np.float64), bias_q.shape)
        new = np.clip(np.round(bias_q - shift / scale), np.iinfo(np.int32).min, np.iinfo(np.int32).max)
        inits[bias_dq.input[0]].CopyFrom(numpy_helper.from_array(new.astype(np.int32), bias_dq.input[0]))
        corrected += 1
        largest = max(largest, float(np.max(np.abs(shift))))
    onnx.save(model, str(qdq_model))
    return {"method": "empirical bias correction of weight rounding (mean Conv inputs of the float model on the "
                      "calibration set)", "convs_corrected": corrected, "largest_shift": float(f"{largest:.4g}")}


def _dequantizes_initializer(node, inits: dict) -> bool:
    return node is not None and node.op_type == "DequantizeLinear" and node.input[0] in inits


def _dequantized(node, inits: dict) -> np.ndarray:
    """The float values a DequantizeLinear of an initializer (per-channel on axis 0 or per-tensor) produces."""
    from onnx import numpy_helper

    values = numpy_helper.to_array(inits[node.input[0]]).astype(np.float64)
    scale = numpy_helper.to_array(inits[node.input[1]]).astype(np.float64)
    zero = numpy_helper.to_array(inits[node.input[2]]).astype(np.float64) if len(node.input) > 2 else np.zeros_like(scale)
    shape = (-1,) + (1,) * (values.ndim - 1) if scale.ndim == 1 else ()
    return (values - zero.reshape(shape)) * scale.reshape(shape)


def _group(node) -> int:
    return next((attribute.i for attribute in node.attribute if attribute.name == "group"), 1)
