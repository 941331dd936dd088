"""ONNX: export from PyTorch, simplification, and ONNX Runtime int8 quantization."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
# onnxsim records its options and every node it removed or changed under these keys; the manifest's
# step info already says what it did, so they are dropped from the artifact.
ONNXSIM_KEY_PREFIX = "onnxsim."

# Imported by the step server before it forks an ONNX step (see `edgekit.pipeline.forkserver`).
PRELOAD = ("onnx", "onnxsim", "onnxruntime", "onnxruntime.quantization")


def export_onnx(model: nn.Module, spec, out: Path) -> dict:
    """torch.onnx.export (TorchScript-based exporter, opset 17), static shape unless dynamic batch."""
    size = spec.card.input_size
    example = torch.randn(spec.batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    dynamic_axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if spec.dynamic_batch else None
    with torch.no_grad():
        torch.onnx.export(
            model, (example,), str(out), dynamo=False, opset_version=OPSET, input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME], dynamic_axes=dynamic_axes, do_constant_folding=True,
        )
    return {"info": {"opset": OPSET, "exporter": "torch.onnx (TorchScript-based)"}}


def simplify_onnx(onnx_file: Path, spec, out: Path) -> dict:
    """onnxsim: constant folding and shape inference; channel shuffle converts to TFLite only after it."""
    import onnx
    from onnxsim import simplify

    model = onnx.load(str(onnx_file))
    before = len(model.graph.node)
    simplified, ok = simplify(model)
    if not ok:
        raise RuntimeError("onnxsim could not validate the simplified model")
    onnx.save(simplified, str(out))
    return {"info": {"nodes_before": before, "nodes_after": len(simplified.graph.node),
                     "metadata_props": embed_metadata(out, spec)}}


def quantize_dynamic_onnx(onnx_file: Path, spec, out: Path) -> dict:
    """ONNX Runtime dynamic quantization: Conv, MatMul and Gemm weights int8, except the stem and depthwise convs.

    Dynamic quantization gives each weight tensor one scale. A depthwise convolution's channels
    differ so much in range that one scale wrecks them, and the stem sees the raw image. On 200
    ImageNet photos, EfficientNet-Lite0's top-1 agreement with fp32 was 90.5% (cosine 0.92) with
    everything quantized, 96.0% (0.98) with depthwise convs in fp32, 97.5% (0.99) with the stem too.
    Those layers hold few of the weights, so the artifact barely grows.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(onnx_file)).graph
    inputs = {tensor.name for tensor in graph.input}
    depthwise = [node.name for node in graph.node if node.op_type == "Conv"
                 and next((a.i for a in node.attribute if a.name == "group"), 1) > 1]
    stem = [node.name for node in graph.node if node.op_type == "Conv" and node.input[0] in inputs]
    quantize_dynamic(str(onnx_file), str(out), weight_type=QuantType.QInt8,
                     op_types_to_quantize=["Conv", "MatMul", "Gemm"], nodes_to_exclude=depthwise + stem)
    return {"info": {"fp32_depthwise_convs": len(depthwise), "fp32_stem_convs": len(stem),
                     "metadata_props": embed_metadata(out, spec)},
            "notes": ["Weights of Conv, MatMul and Gemm are int8, except the stem convolution and depthwise "
                      f"convolutions ({len(stem) + len(depthwise)} here), which stay fp32; activations are "
                      "quantized per batch at run time."]}


class _Reader:
    """Feeds the calibration set to ONNX Runtime's calibrator, `batch` samples at a time, in strides."""

    def __init__(self, data: np.ndarray, batch: int) -> None:
        self.batches = [data[i:i + batch] for i in range(0, len(data) - batch + 1, batch)]
        self.start, self.end = 0, len(self.batches)

    def __len__(self) -> int:
        return len(self.batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self.start, self.end = start_index, min(end_index, len(self.batches))

    def get_next(self):
        if self.start >= self.end:
            return None
        self.start += 1
        return {INPUT_NAME: self.batches[self.start - 1]}


def quantize_static_onnx(onnx_file: Path, spec, out: Path) -> dict:
    """Static QDQ int8 by ONNX Runtime: uint8 activations, per-channel 7-bit weights, bias-corrected, calibrated.

    Activation ranges are moving averages of each sample's min and max (ONNX Runtime's
    `CalibMovingAverage`), not the extremes of the whole set, and the classifier (Gemm/MatMul)
    stays fp32, so the logits are never clipped.

    Activations are uint8 (U8S8), not int8: ONNX Runtime's x86 kernels fuse a QDQ Conv, Add,
    Sigmoid or Mul into its QLinear form only for uint8 activations (with int8 activations 15 of
    mobilenet_v2's 52 convolutions stayed fp32, and the file ran at fp32 speed).

    Weights are int8 per channel on the reduced range [-64, 63] (`reduce_range`). On x86 CPUs
    without AVX-512 VNNI or AVX-VNNI, ONNX Runtime's U8S8 kernels add pairs of uint8 x int8
    products in 16 bits, which saturates with full-range weights: measured on an AVX2-only
    Zen 3, mobilenet_v2's full-range file agreed with fp32 on 84.4% of 500 photos while the same
    file's QDQ definition (ORT_DISABLE_ALL) agreed on 96.4%. With 7-bit weights no sum can
    saturate, so the file computes the same on every CPU. The extra rounding is then taken out
    of the biases (`edgekit.quantization.bias_correction`): on the 500 photos, mobilenet_v2
    agrees on 94.8% without and 96.8% with the correction, effnet_lite0 on 96.0% and 98.4%
    (bundled calibration).

    Channel shuffles are then written as Gathers (`edgekit.quantization.channel_shuffle`): the same
    values, in a form ONNX Runtime keeps in its int8 NHWC layout.
    """
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from edgekit.quantization.bias_correction.onnx import conv_input_means, correct_biases
    from edgekit.quantization.channel_shuffle import shuffles_as_gathers
    from edgekit.quantization.layers import mixed_precision_notes, nodes_of

    prepared = out.with_suffix(".prep.onnx")
    quant_pre_process(str(onnx_file), str(prepared), skip_symbolic_shape=True)
    data = np.load(spec.calibration_file)
    graph = onnx.load(str(prepared)).graph
    classifier = [node.name for node in graph.node if node.op_type in ("Gemm", "MatMul")]
    ranges = out.with_suffix(".ranges.json")

    means = conv_input_means(prepared, data, INPUT_NAME)
    corrections: dict = {}

    def quantize(kept: list[str], path: Path) -> None:
        _quantize_qdq(prepared, path, data, spec.batch, classifier + kept, ranges)
        corrections.update(correct_biases(prepared, path, means))

    info: dict = {"calibration_samples": int(len(data)), "method": "MinMax, moving average (ONNX Runtime)",
                  "format": "QDQ U8S8 (uint8 activations, int8 per-channel weights on the 7-bit range [-64, 63])",
                  "fp32_nodes": classifier}
    if tuple(spec.keep_float) == ("auto",):
        result, groups = _rescue(onnx_file, spec, graph, quantize, out)
        kept = {module: groups[module] for module in result.kept}
        info["rescue"] = result.to_dict()
    else:
        kept = nodes_of(spec.keep_float, [node.name for node in graph.node])
    quantize([name for nodes in kept.values() for name in nodes], out)
    info["channel_shuffles_as_gathers"] = shuffles_as_gathers(out)
    for scratch in (prepared, ranges, out.with_suffix(".candidate.onnx")):
        scratch.unlink(missing_ok=True)
    info |= {"keep_float": {module: nodes for module, nodes in kept.items()}, "bias_correction": corrections,
             "metadata_props": embed_metadata(out, spec)}
    notes = mixed_precision_notes(kept)
    return {"info": info, "notes": notes}


def _quantize_qdq(model: Path, out: Path, data: np.ndarray, batch: int, exclude: list[str], ranges: Path) -> None:
    """One quantize_static run (7-bit weights: see quantize_static_onnx); the ranges are calibrated once, cached in `ranges`."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    reader = _Reader(data, batch)
    # Strides bound the calibrator's memory: it keeps every intermediate output of a stride.
    stride = next(k for k in (10, 8, 5, 4, 2, 1) if len(reader) % k == 0)
    quantize_static(
        str(model), str(out), reader, quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
        nodes_to_exclude=exclude, calibration_cache_path=str(ranges),
        extra_options={"CalibMovingAverage": True, "CalibStridedMinMax": stride},
    )


def _rescue(onnx_file: Path, spec, graph, quantize, out: Path):
    """`--keep-float auto`: searches, on the images of `spec.data`, the fewest convolutions to keep in float."""
    from edgekit.quantization import rescue
    from edgekit.quantization.layers import conv_groups

    inputs, labels = rescue.user_images(spec)
    score = rescue.scorer(_logits(onnx_file, inputs, spec.batch), labels)
    groups = conv_groups(graph)
    candidate = out.with_suffix(".candidate.onnx")

    def measure(kept: list[str]) -> rescue.Score:
        quantize([name for module in kept for name in groups[module]], candidate)
        return score(_logits(candidate, inputs, spec.batch))

    result = rescue.run(list(groups), measure, spec, len(inputs), labels is not None, "convolutions",
                        "; the loss is not in the convolutions' int8 (raise --max-drop, or export onnx fp32)")
    return result, groups


def _logits(path: Path, inputs: np.ndarray, batch: int) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    from edgekit.runners.base import fixed_batches

    static = isinstance(session.get_inputs()[0].shape[0], int)
    if not static:
        return np.concatenate([session.run(None, {name: inputs[i:i + 32]})[0] for i in range(0, len(inputs), 32)])
    return np.concatenate([session.run(None, {name: group})[0][:count] for group, count in fixed_batches(inputs, batch)])


def embed_metadata(path: Path, spec) -> list[str]:
    """Writes the contract into `path`'s `metadata_props` (rewritten in place), drops onnxsim's; returns the keys.

    Every value is a string; lists are JSON. A client needs nothing else to run the file
    (ONNX Runtime: `session.get_modelmeta().custom_metadata_map`).
    """
    import onnx

    model = onnx.load(str(path))
    props = contract_metadata(model, spec)
    kept = [(p.key, p.value) for p in model.metadata_props if not p.key.startswith(ONNXSIM_KEY_PREFIX) and p.key not in props]
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, dict(kept) | props)
    onnx.save(model, str(path))
    return sorted(props)


def contract_metadata(model, spec) -> dict[str, str]:
    """The preprocessing contract and class names of `model` (an ONNX ModelProto) as metadata_props."""
    import json

    import edgekit
    from edgekit.models import model_card

    card = model_card(spec.model, num_classes=spec.num_classes, input_size=spec.input_size, weights=spec.weights_file)
    graph = model.graph
    shape = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    return {
        "edgekit_version": edgekit.__version__,
        "model": card.name,
        "classes": json.dumps(list(card.class_names)),
        "num_classes": str(card.num_classes),
        "input_name": graph.input[0].name,
        "input_shape": json.dumps(shape),
        "input_dtype": "float32",
        "layout": "NCHW",
        "channel_order": "RGB",
        "resize_size": str(card.resize_size),
        "resize": "shorter side to resize_size, aspect ratio kept",
        "interpolation": card.interpolation,
        "antialias": "true",
        "crop": f"center {card.input_size}x{card.input_size}",
        "mean": json.dumps(list(card.mean)),
        "std": json.dumps(list(card.std)),
        "normalization": "caller",
        "preprocessing": (f"RGB (grayscale and RGBA converted to RGB); resize the shorter side to {card.resize_size} "
                          f"({card.interpolation}, antialiased, as PIL does); center-crop {card.input_size}; "
                          "divide by 255; subtract mean; divide by std; NCHW float32"),
        "output_name": graph.output[0].name,
        "output_kind": "logits",
    }
