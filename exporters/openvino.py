"""OpenVINO: the simplified ONNX model to an IR (`.xml` + `.bin`), bf16 inference, and onnx-int8's QDQ file as int8.

Each step records in its contract the inference precision OpenVINO compiled the artifact at here
(`device["inference_precision"]`, read back from the compiled model), so the verifier, `predict`
and the bench all run it at that precision.
"""

from __future__ import annotations

from pathlib import Path

from edgekit.runners.openvino_runner import compile_model, device_info

# Imported by the step server before it forks an OpenVINO step (see `edgekit.pipeline.forkserver`).
PRELOAD = ("openvino", "onnx")


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


def convert_quantized(qdq_file: Path, spec, out: Path) -> dict:
    """edgekit's onnx-int8 file (QDQ, 7-bit weights, bias-corrected) to an IR that OpenVINO runs in int8.

    OpenVINO reads each QuantizeLinear/DequantizeLinear pair as a FakeQuantize and runs the layers
    between them on its int8 kernels; what the QDQ file keeps float (the classifier, `--keep-float`
    layers) stays float and computes in f32, as it does alike on every CPU. The quantization itself is
    onnx-int8's (the calibration, its ranges and bias correction, and `--keep-float`, `auto` included):
    chosen over NNCF's `nncf.quantize` on the fp32 IR because, calibrated on the bundled photos and
    scored on the odd half of `imagenet-sample`, NNCF's best of ten settings agreed with fp32 on
    96.0% (mobilenet_v2) and its default 94.8% and 95.6% (effnet_lite0, logit SQNR 11.4 dB), where this
    file agreed on 96.8% and 98.4% (SQNR 19.0 and 18.3 dB) at the same speed. See README "openvino-int8".
    """
    import io

    import openvino as ov

    from edgekit.quantization.layers import module_of

    model = ov.convert_model(io.BytesIO(qdq_file.read_bytes()))
    # A quantized convolution reads its weights through a FakeQuantize; a float one reads a float Constant directly.
    # The classifier is float by design, as in onnx-int8 (its "fp32_nodes"), and is not counted as kept.
    float_layers = sorted({module_of(op.get_friendly_name().removesuffix("/WithoutBiases")) for op in model.get_ops()
                           if op.get_type_name() in ("Convolution", "GroupConvolution")
                           and op.input_value(1).get_node().get_type_name() == "Constant"} - {""})
    info = {"route": "openvino.convert_model from the onnx-int8 step's QDQ file",
            "keep_float": {module: [] for module in float_layers}}
    return _save(model, out, "f32", info)  # the onnx-int8 step's notes already name the float layers


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
