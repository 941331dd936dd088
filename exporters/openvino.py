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
    """
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(xml_file))
    data = np.load(spec.calibration_file)
    batches = [data[i:i + spec.batch] for i in range(0, len(data) - spec.batch + 1, spec.batch)]
    quantized = nncf.quantize(model, nncf.Dataset(batches), subset_size=len(batches), fast_bias_correction=True)
    info = {"calibration_samples": int(len(data)), "method": "nncf.quantize, preset PERFORMANCE, fast bias correction",
            "nncf": nncf.__version__}
    return _save(quantized, out, "f32", info)


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
