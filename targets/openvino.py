"""OpenVINO targets for x86 CPUs: an IR at exact f32, the same IR computing in bf16, and onnx-int8 as an int8 IR.

OpenVINO's CPU plugin computes in bf16 by default where the CPU has bf16 instructions, so the
precision an IR runs at is decided by the machine, not the file. Each target therefore pins it:
`openvino` asks for f32 (fp32 tolerance, the same numbers on every CPU), `openvino-bf16` for bf16
(bf16 tolerance, offered only where the CPU computes bf16). The contract records the precision the
verifier saw, and the runner asks for it again.
"""

from __future__ import annotations

from edgekit.targets import ONNX, ONNX_INT8, SIMPLIFY, TO_ONNX, Step, Target, register_target

OPENVINO = ONNX + (("openvino", "openvino"),)
IR_NOTE = "An OpenVINO IR is an .xml file with its .bin beside it (same stem): copy both."

TO_OPENVINO = Step("onnx -> openvino IR (f32 inference)", "openvino:convert_openvino", "model.xml", "fp32",
                   companions=("model.bin",))

register_target(Target(
    "openvino", "OpenVINO IR for x86 CPUs, fp32 weights, inference pinned to f32 (exact on every CPU)",
    (TO_ONNX, SIMPLIFY, TO_OPENVINO), requires=OPENVINO, notes=(IR_NOTE,),
))
register_target(Target(
    "openvino-bf16", "OpenVINO IR computing in bf16 (OpenVINO's default on CPUs with AVX512-BF16 or AMX)",
    (TO_ONNX, SIMPLIFY, TO_OPENVINO,
     Step("openvino bf16 inference", "openvino:bf16_inference", "model.bf16.xml", "bf16",
          companions=("model.bf16.bin",))),
    requires=OPENVINO, probe="openvino:bf16_unavailable", notes=(IR_NOTE,),
))
register_target(Target(
    "openvino-int8", "OpenVINO IR of onnx-int8's file (static QDQ int8, 7-bit per-channel weights, bias-corrected), "
    "run on OpenVINO's int8 kernels, calibrated; --keep-float to mix",
    (TO_ONNX, SIMPLIFY, ONNX_INT8,
     Step("onnx int8 (QDQ) -> openvino IR", "openvino:convert_quantized", "model.int8.xml", "int8",
          companions=("model.int8.bin",))),
    requires=OPENVINO, calibrated=True, notes=(
        IR_NOTE,
        "The quantization is onnx-int8's, verified as its own step first: NNCF's nncf.quantize on the fp32 IR was "
        "measured and agreed less with fp32 (mobilenet_v2 94.8%, effnet_lite0 95.6% of the odd half of ImageNet "
        "photos, against 96.8% and 98.4% for this route, 2026-12-05).",
    ),
))
