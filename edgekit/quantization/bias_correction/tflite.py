"""Bias correction of a full-integer TFLite file (see the package docstring)."""

from __future__ import annotations

import numpy as np

from edgekit.quantization.bias_correction import output_shift

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
