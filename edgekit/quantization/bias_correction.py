"""Empirical bias correction of the weight-rounding error of int8 models: ONNX QDQ graphs and TFLite files.

Rounding a convolution's weights to int8 shifts the mean of each output channel by
`(W_int8 - W) . E[x]`, where `E[x]` is the mean of the layer's input per channel. The shift is
the same for every image, so it can be taken out of the bias (Nagel et al., "Data-Free
Quantization Through Weight Equalization and Bias Correction", 2019, the empirical variant that
NNCF's and AIMET's bias correction also implement). The means come from the float model on the
calibration set; the corrected bias is requantized on the bias's own int32 grid, so the graph and
its kernels are unchanged.

Written here rather than taken from a library: NNCF's bias correction works only on the graph it
quantizes itself, whose Q/DQ placement ONNX Runtime runs 2.3-3.3x slower than fp32 (measured, see
the README's int8 fidelity section), and aimet-onnx is not installable beside the pinned set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


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


def output_shift(rounding: np.ndarray, mean: np.ndarray, group: int) -> np.ndarray:
    """Per output channel, the mean change of a (grouped) convolution's output caused by `rounding` of its weights.

    `rounding` is laid out [out, in / group, kh, kw] (ONNX's OIHW); `mean` is the input's mean per channel.
    """
    out_channels, per_group = rounding.shape[:2]
    group_of = np.arange(out_channels) // (out_channels // group)
    inputs = mean[group_of[:, None] * per_group + np.arange(per_group)[None, :]]
    return np.einsum("oikl,oi->o", rounding, inputs)


TFLITE_LAYERS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}


def tflite_layers(model) -> list[tuple[str, object]]:
    """(op name, operator) of each conv or fully connected op of a TFLite model object, in graph order."""
    from tensorflow.lite.python.schema_py_generated import BuiltinOperator

    names = {value: name for name, value in vars(BuiltinOperator).items() if not name.startswith("_")}
    layers = []
    for op in model.subgraphs[0].operators:
        code = model.operatorCodes[op.opcodeIndex]
        name = names.get(max(code.builtinCode, code.deprecatedBuiltinCode))
        if name in TFLITE_LAYERS and len(op.inputs) > 2 and op.inputs[2] >= 0:
            layers.append((name, op))
    return layers


def tflite_input_means(float_model: bytes, data: np.ndarray) -> list[np.ndarray]:
    """The mean per channel of each conv/FC layer's input over `data` (NHWC samples), in `tflite_layers` order."""
    from ai_edge_litert.interpreter import Interpreter
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(float_model))
    inputs = [op.inputs[0] for _, op in tflite_layers(model)]
    interpreter = Interpreter(model_content=bytes(float_model), experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    feed = interpreter.get_input_details()[0]["index"]
    sums: list = [0.0] * len(inputs)
    for sample in data:
        interpreter.set_tensor(feed, sample[None].astype(np.float32))
        interpreter.invoke()
        for column, index in enumerate(inputs):
            values = interpreter.get_tensor(index)
            sums[column] = sums[column] + values.reshape(-1, values.shape[-1]).astype(np.float64).mean(axis=0)
    return [total / len(data) for total in sums]


def correct_tflite_biases(float_model: bytes, quantized: bytes, means: list[np.ndarray]) -> tuple[bytes, dict]:
    """`quantized` (a full-integer TFLite file) with each int8 layer's mean weight-rounding shift taken out of its
    int32 bias. Layers are paired with `float_model`'s (the calibrated float file it was quantized from) in
    order, and the pairing must agree on every weight shape. Layers left in float are skipped.

    Raises:
        RuntimeError: the two files' layers do not pair.
    """
    from tensorflow.lite.python.schema_py_generated import TensorType
    from tensorflow.lite.tools import flatbuffer_utils

    reference = flatbuffer_utils.convert_bytearray_to_object(bytearray(float_model))
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(quantized))
    pairs = list(zip(tflite_layers(reference), tflite_layers(model)))
    float_tensors, tensors = reference.subgraphs[0].tensors, model.subgraphs[0].tensors
    if len(pairs) != len(means) or any(list(float_tensors[a.inputs[1]].shape) != list(tensors[b.inputs[1]].shape)
                                       for (_, a), (_, b) in pairs):
        raise RuntimeError("bias correction: the quantized TFLite layers do not pair with the float ones")
    corrected, largest = 0, 0.0
    for ((kind, float_op), (_, op)), mean in zip(pairs, means):
        weight, bias = tensors[op.inputs[1]], tensors[op.inputs[2]]
        if weight.type != TensorType.INT8 or bias.type != TensorType.INT32:
            continue
        original = _buffer(reference, float_tensors[float_op.inputs[1]], np.float32).astype(np.float64)
        scale = np.asarray(weight.quantization.scale, np.float64)
        axis = weight.quantization.quantizedDimension if len(scale) > 1 else 0
        shape = [1] * original.ndim
        shape[axis] = len(scale)
        rounding = _buffer(model, weight, np.int8) * scale.reshape(shape) - original
        shift = output_shift(*_as_oihw(kind, rounding, mean))
        bias_scale = np.asarray(bias.quantization.scale, np.float64)
        values = _buffer(model, bias, np.int32).astype(np.float64)
        new = np.clip(np.round(values - shift / bias_scale), np.iinfo(np.int32).min, np.iinfo(np.int32).max)
        model.buffers[bias.buffer].data = np.frombuffer(new.astype("<i4").tobytes(), np.uint8)
        corrected += 1
        largest = max(largest, float(np.max(np.abs(shift))))
    info = {"method": "empirical bias correction of weight rounding (mean layer inputs of the calibrated float "
                      "model on the calibration set)", "layers_corrected": corrected,
            "largest_shift": float(f"{largest:.4g}")}
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), info


def _buffer(model, tensor, dtype) -> np.ndarray:
    return np.frombuffer(bytes(model.buffers[tensor.buffer].data), dtype).reshape(list(tensor.shape))


def _as_oihw(kind: str, rounding: np.ndarray, mean: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """A TFLite layer's weight rounding in ONNX's OIHW layout, the input mean, and the group count."""
    if kind == "FULLY_CONNECTED":  # [out, in]
        return rounding[:, :, None, None], mean, 1
    if kind == "DEPTHWISE_CONV_2D":  # [1, kh, kw, channels x multiplier]
        return rounding.transpose(3, 0, 1, 2), mean, len(mean)
    oihw = rounding.transpose(0, 3, 1, 2)  # CONV_2D: [out, kh, kw, in / group]
    return oihw, mean, len(mean) // oihw.shape[1]
