"""OpenVINO: the simplified ONNX model to an IR (`.xml` + `.bin`), bf16 inference, and NNCF int8.

Each step records in its contract the inference precision OpenVINO compiled the artifact at here
(`device["inference_precision"]`, read back from the compiled model), so the verifier, `predict`
and the bench all run it at that precision.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.runners.openvino_runner import compile_model, device_info


def convert_openvino(onnx_file: Path, spec, out: Path) -> dict:
    """`openvino.convert_model` on the ONNX file; fp32 weights, inference pinned to f32.

    The file goes in as bytes: convert_model splits a path at commas (its list of model files).
    """
    import io

    import openvino as ov

    model = ov.convert_model(io.BytesIO(onnx_file.read_bytes()))
    return _save(model, out, "f32", {"route": "openvino.convert_model from ONNX", "weights": "fp32"})


def bf16_inference(xml_file: Path, spec, out: Path) -> dict:
    """The same IR, verified computing in bf16 (the CPU plugin's default where the CPU has bf16 instructions)."""
    import openvino as ov

    return _save(ov.Core().read_model(str(xml_file)), out, "bf16", {"weights": "fp32"})


def quantize_nncf(xml_file: Path, spec, out: Path) -> dict:
    """NNCF post-training int8 (default preset, fast bias correction), calibrated on `spec.calibration_file`.

    What stays float computes in f32: on mobilenet_v2 the bf16 default gave the same top-1 and agreement
    and no measurable speed-up, and f32 makes the artifact compute alike on every CPU.
    `spec.keep_float` names PyTorch modules NNCF leaves in float (its `IgnoredScope`); ("auto",) runs
    `nncf.quantize_with_accuracy_control`, which returns layers to float until top-1 on the images of
    `spec.data` is within `spec.max_drop` points of the float model's.
    """
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    from edgekit.quantization.layers import mixed_precision_notes, module_of, nodes_of

    model = ov.Core().read_model(str(xml_file))
    data = np.load(spec.calibration_file)
    batches = [data[i:i + spec.batch] for i in range(0, len(data) - spec.batch + 1, spec.batch)]
    calibration = nncf.Dataset(batches)
    advanced = AdvancedQuantizationParameters(overflow_fix=OverflowFix.ENABLE)
    info = {"calibration_samples": int(len(data)), "method": "nncf.quantize, preset PERFORMANCE, fast bias correction",
            "nncf": nncf.__version__, "overflow_fix": "every layer (7-bit weights)"}
    if tuple(spec.keep_float) == ("auto",):
        images, labels = _validation_set(model, spec)
        quantized = nncf.quantize_with_accuracy_control(
            model, calibration, nncf.Dataset(list(zip(images, labels))), _top1_of, max_drop=spec.max_drop / 100,
            subset_size=len(batches), fast_bias_correction=True, advanced_quantization_parameters=advanced)
        info["method"] = "nncf.quantize_with_accuracy_control, fast bias correction"
        info["accuracy_control"] = {"max_drop_points": spec.max_drop, "images": len(images)}
    else:
        ops = [op.get_friendly_name() for op in model.get_ops() if op.get_type_name() not in ("Constant", "Parameter", "Result")]
        kept = nodes_of(spec.keep_float, ops)
        scope = nncf.IgnoredScope(names=[name for names in kept.values() for name in names], validate=False)
        quantized = nncf.quantize(model, calibration, subset_size=len(batches), fast_bias_correction=True, ignored_scope=scope,
                                  advanced_parameters=advanced)
    # NNCF stores a quantized layer's weights as int8 constants scaled by a Multiply; a float layer reads a float Constant.
    float_layers = sorted({module_of(op.get_friendly_name().removesuffix("/WithoutBiases")) for op in quantized.get_ops()
                           if op.get_type_name() in ("Convolution", "GroupConvolution", "MatMul")
                           and op.input_value(1).get_node().get_type_name() == "Constant"} - {""})
    info["keep_float"] = {module: [] for module in float_layers}
    report = _save(quantized, out, "f32", info)
    report["notes"] = mixed_precision_notes(float_layers)
    return report


def _validation_set(model, spec) -> tuple[list[np.ndarray], list[int]]:
    """The images of `spec.data`, one per batch, with their labels, or the float model's top-1 where unlabelled."""
    import openvino as ov

    from edgekit.quantization.rescue import user_images

    inputs, labels = user_images(spec)
    images = [inputs[i:i + 1].repeat(spec.batch, 0) for i in range(len(inputs))]
    if labels is not None:
        return images, [int(label) for label in labels]
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return images, [int(compiled(image)[0][0].argmax()) for image in images]


def _top1_of(compiled, items) -> float:
    """nncf's validation function: top-1 accuracy of `compiled` on (image, label) pairs."""
    hits = [int(compiled(image)[0][0].argmax()) == label for image, label in items]
    return float(np.mean(hits))


def bf16_unavailable() -> str | None:
    """Why OpenVINO cannot compute in bf16 on this CPU, or None."""
    import openvino as ov

    capabilities = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    if "BF16" in capabilities:
        return None
    return (f"this CPU has no bf16 instructions (AVX512-BF16 or AMX; OpenVINO reports {', '.join(capabilities)}), so "
            "OpenVINO would compute in f32; export 'openvino', which is exact f32")


def _save(model, out: Path, precision: str, info: dict) -> dict:
    """Saves the IR (weights as they are, never compressed to fp16) and records the precision it compiles at here."""
    import openvino as ov

    ov.save_model(model, str(out), compress_to_fp16=False)
    _, seen = compile_model(out, precision)
    if seen != precision:
        raise RuntimeError(f"OpenVINO compiled {out.name} at {seen} where {precision} was asked for; this CPU "
                           f"lacks {precision}")
    return {"info": info | {"inference_precision": seen}, "contract": {"device": device_info(seen)}}
