"""Export targets: what each one is, declared as data (its steps, their precision and tolerance).

A step names its exporter function, the file it writes, the file it reads (by default the
previous step's output; "model" is the PyTorch module), and the precision its output is
verified at. Every step with a precision is verified against PyTorch before the next runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgekit.errors import UnknownTargetError, did_you_mean

MODEL = "model"


@dataclass(frozen=True)
class Step:
    """One conversion: `exporter` ("module:function" under edgekit.exporters) reads `input`, writes `output`.

    `side_outputs` are files or folders a later step may read (onnx2tf's SavedModel); `companions`
    are files beside `output` that belong to the artifact and ship with it (an OpenVINO IR's `.bin`).
    """

    name: str
    exporter: str
    output: str
    precision: str
    input: str | None = None
    side_outputs: tuple[str, ...] = ()
    companions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Target:
    """A named export target: its steps, what it needs installed, and what a user should know."""

    name: str
    description: str
    steps: tuple[Step, ...]
    requires: tuple[tuple[str, str], ...] = ()
    calibrated: bool = False
    supports_dynamic_batch: bool = True
    notes: tuple[str, ...] = ()
    probe: str | None = None
    fp16_risk_check: bool = False
    caveat: str | None = None  # what a user picking by name would not expect (shown under `edgekit targets`)

    def unavailable_reason(self) -> str | None:
        """Why this target cannot run here (a backend missing, or the probe's answer), or None."""
        import importlib

        from edgekit.backends import install_hint, missing

        absent = [(module, extra) for module, extra in self.requires if missing(module)]
        if absent:
            hints = "; ".join(sorted({install_hint(m, e) for m, e in absent}))
            which = "which is" if len(absent) == 1 else "which are"
            return f"needs {', '.join(m for m, _ in absent)}, {which} not installed. Install: {hints}"
        if self.probe:
            module, function = self.probe.split(":")
            return getattr(importlib.import_module(f"edgekit.exporters.{module}"), function)()
        return None

    @property
    def artifact(self) -> str:
        return self.steps[-1].output

    @property
    def precision(self) -> str:
        return self.steps[-1].precision

    def inputs(self) -> list[tuple[Step, str]]:
        """Each step with the name of the file (or "model") it reads."""
        resolved, previous = [], MODEL
        for step in self.steps:
            resolved.append((step, step.input or previous))
            previous = step.output
        return resolved


_TARGETS: dict[str, Target] = {}


def register_target(target: Target) -> Target:
    """Adds a target; a duplicate name is an error."""
    if target.name in _TARGETS:
        raise ValueError(f"target {target.name!r} is registered twice")
    _TARGETS[target.name] = target
    return target


def get_target(name: str) -> Target:
    """The target called `name`, or UnknownTargetError with a did-you-mean."""
    if name not in _TARGETS:
        raise UnknownTargetError(f"unknown target {name!r}.{did_you_mean(name, _TARGETS)} "
                                 "Run 'edgekit targets' to list them.")
    return _TARGETS[name]


def list_targets() -> list[str]:
    return list(_TARGETS)


TORCH = (("torch", "export"),)
ONNX = TORCH + (("onnx", "onnx"), ("onnxsim", "onnx"), ("onnxruntime", "onnx"))
TFLITE = ONNX + (("tensorflow", "tflite"), ("onnx2tf", "tflite"), ("ai_edge_litert", "tflite"), ("mediapipe", "tflite"))

# Measured on mobilenet_v2 (ImageNet weights), one thread, median CPU time of 30-40 alternating runs, AMD Zen 4:
# `python scripts/cpu_time.py FP32_DIR INT8_DIR` (see the README's benchmark section).
SIZE_NOT_SPEED = ("Dynamic int8 is for a smaller file, not for speed: on mobilenet_v2 the file goes {size} against "
                  "{fp32}, and one inference takes {slower} on x86 (1 thread, CPU time).")

XNNPACK_INT8_ON_X86 = ("For ARM devices. On x86 XNNPACK's int8 kernels gain little or nothing: on an AVX2 CPU without VNNI "
                       "(Zen 3, 2026-12-05) mobilenet_v2's int8 file ran 1.1-1.2x slower than {fp32} (1 thread, CPU "
                       "time, scripts/cpu_time.py; 1.6-1.8x slower in edgekit bench at 2 threads); on AVX-512 VNNI "
                       "(Zen 4) 1.1x (tflite) to 2x (executorch) faster. onnx-int8 or openvino-int8 are the x86 int8.")

TO_ONNX = Step("torch -> onnx", "onnx:export_onnx", "model.raw.onnx", "fp32")
SIMPLIFY = Step("onnxsim", "onnx:simplify_onnx", "model.onnx", "fp32")
ONNX_INT8 = Step("onnx -> int8 static (QDQ)", "onnx:quantize_static_onnx", "model.int8.onnx", "int8")
TO_TFLITE = Step("onnx -> tflite fp32 (onnx2tf)", "tflite:convert_onnx2tf", "model_float32.tflite", "fp32",
                 side_outputs=("saved_model",))

register_target(Target(
    "torchscript", "TorchScript .pt (fp32), traced or scripted, whichever verifies",
    (Step("torch -> torchscript", "torchscript:export_torchscript", "model.pt", "fp32"),), requires=TORCH,
))
register_target(Target(
    "torchscript-mobile", "PyTorch Mobile .ptl: optimize_for_mobile and the lite-interpreter format",
    (Step("torch -> torchscript", "torchscript:export_torchscript", "model.pt", "fp32"),
     Step("optimize_for_mobile -> .ptl", "torchscript:export_mobile", "model.ptl", "fp32")),
    requires=TORCH, probe="torchscript:mobile_unavailable",
))
register_target(Target(
    "torchscript-lite", "PyTorch Mobile lite-interpreter .ptl, not optimized (no optimize_for_mobile)",
    (Step("torch -> torchscript", "torchscript:export_torchscript", "model.pt", "fp32"),
     Step("torchscript -> lite interpreter .ptl", "torchscript:export_lite", "model.ptl", "fp32")),
    requires=TORCH, notes=("Not optimized for mobile: BatchNorm is not folded and nothing is fused, because "
                           "optimize_for_mobile needs a torch built with XNNPACK. PyTorch Mobile is superseded "
                           "by ExecuTorch: prefer the executorch targets.",),
))
register_target(Target(
    "onnx", "ONNX fp32, opset 17, simplified with onnxsim",
    (TO_ONNX, SIMPLIFY), requires=ONNX,
))
register_target(Target(
    "onnx-int8-dynamic", "ONNX Runtime dynamic quantization, for size: Conv (not stem or depthwise) and MatMul weights "
    "int8; 0.28x the fp32 file but 4.3x its latency (mobilenet_v2)",
    (TO_ONNX, SIMPLIFY, Step("onnx -> int8 dynamic", "onnx:quantize_dynamic_onnx", "model.int8-dynamic.onnx", "int8-dynamic")),
    requires=ONNX, notes=(SIZE_NOT_SPEED.format(fp32="onnx", size="14.0 -> 3.9 MB", slower="4.3x (4.92 -> 21.34 ms)"),),
    caveat="for size, not speed: 4.3x slower than onnx on x86 (mobilenet_v2)",
))
register_target(Target(
    "onnx-int8", "ONNX static QDQ int8 (uint8 activations, per-channel int8 weights), calibrated; --keep-float to mix",
    (TO_ONNX, SIMPLIFY, ONNX_INT8),
    requires=ONNX, calibrated=True, notes=(
        "Speed in ONNX Runtime 1.32 on x86, batch 1, against the onnx fp32 file. On AVX-512 VNNI (Zen 4, 2026-12-02), "
        "one thread (CPU time, scripts/cpu_time.py): mobilenet_v2 1.8x faster, effnet_lite0 1.7x, shufflenet_v2_x1_0 "
        "1.17x, effnet_b0 1.03x; two threads (edgekit bench, wall time, one run): mobilenet_v2 1.45x, shufflenet_v2_x1_0 "
        "1.11x, effnet_b0 0.80x (slower). On AVX2 without VNNI (Zen 3, 2026-12-05, 7-bit weights), two threads: "
        "mobilenet_v2 1.69x, shufflenet_v2_x1_0 0.89x (slower), effnet_b0 1.31x; one thread mobilenet_v2 1.42x. "
        "Those shufflenet figures are from before 2026-12-07, when its channel shuffles and splits (47 layout "
        "Transposes around the int8 convolutions) became Gathers (34): since then, on the Zen 4, one thread 1.43x "
        "(1.19x before, same run), two threads 0.98-2.52x over six edgekit bench runs, median 1.58x; timed in rounds "
        "and compared round by round (edgekit bench --runs 300 --rounds 10, 2026-12-07, four runs each) 1.54-1.66x, "
        "mobilenet_v2 2.09-2.20x, effnet_b0 1.12-1.18x. "
        "EfficientNet's SiLU and squeeze-and-excitation run as QLinearSigmoid + QLinearMul, about 45% of its int8 time.",
        "Weights are 7-bit (ONNX Runtime's reduce_range): on x86 CPUs without VNNI its uint8 x int8 kernels add "
        "products in 16 bits, which saturates with full-range weights; 7-bit weights compute the file's QDQ "
        "definition on every CPU, at the same speed.",
    ),
    caveat="on x86, faster than onnx for mobilenet_v2 (2.09-2.20x at 2 threads on AVX-512 VNNI, 1.31-1.69x on "
           "AVX2) and effnet_lite0 (1.7x at 1 thread), shufflenet_v2_x1_0 1.43x at 1 thread and 1.54-1.66x at 2 "
           "(VNNI; 0.80-1.11x before its shuffles became Gathers), not for effnet_b0 (1.12-1.18x VNNI, 1.31x AVX2: "
           "its SiLU and squeeze-and-excitation cost more in int8)",
))
register_target(Target(
    "torch-int8-dynamic", "PyTorch dynamic quantization saved as TorchScript, for size: only nn.Linear is int8; 0.74x "
    "the torchscript file at the same latency (mobilenet_v2)",
    (Step("torch -> dynamic int8 (nn.Linear only)", "torchscript:export_dynamic_int8", "model.int8-dynamic.pt", "int8-linear"),),
    requires=TORCH, notes=("PyTorch's quantize_dynamic quantizes nn.Linear only; convolutions stay fp32.",
                           SIZE_NOT_SPEED.format(fp32="torchscript", size="14.5 -> 10.7 MB",
                                                 slower="0.95x (18.26 -> 17.37 ms), hardly faster")),
    caveat="for size, not speed: convolutions stay fp32, same latency as torchscript",
))
register_target(Target(
    "tflite-fp32", "TFLite fp32 via onnx2tf", (TO_ONNX, SIMPLIFY, TO_TFLITE),
    requires=TFLITE, supports_dynamic_batch=False,
))
register_target(Target(
    "tflite-fp16", "TFLite with fp16 weights (computes in fp32 on CPUs, fp16 on GPU delegates)",
    (TO_ONNX, SIMPLIFY, TO_TFLITE,
     Step("tflite fp32 -> fp16", "tflite:convert_fp16", "model_float16.tflite", "fp16", input="saved_model")),
    requires=TFLITE, supports_dynamic_batch=False,
))
register_target(Target(
    "tflite-int8-dynamic", "TFLite dynamic-range quantization, for size: int8 weights, float activations; 0.27x the "
    "fp32 file but 2.5x its latency (mobilenet_v2)",
    (TO_ONNX, SIMPLIFY, TO_TFLITE,
     Step("tflite fp32 -> int8 dynamic range", "tflite:convert_dynamic_range", "model_dynamic_range_quant.tflite",
          "int8-dynamic", input="saved_model")),
    requires=TFLITE, supports_dynamic_batch=False,
    notes=(SIZE_NOT_SPEED.format(fp32="tflite-fp32", size="14.0 -> 3.8 MB", slower="2.5x (4.71 -> 11.96 ms)"),),
    caveat="for size, not speed: 2.5x slower than tflite-fp32 on x86 (mobilenet_v2)",
))
register_target(Target(
    "tflite-int8", "TFLite full-integer int8: int8 weights and activations, calibrated; int8, uint8 (MediaPipe) "
    "or float32 input and output (--io-dtype)",
    (TO_ONNX, SIMPLIFY, TO_TFLITE,
     Step("tflite fp32 -> full int8", "tflite_int8:convert_full_int8", "model_full_integer_quant.tflite", "int8",
          input="saved_model")),
    requires=TFLITE, calibrated=True, supports_dynamic_batch=False, notes=(XNNPACK_INT8_ON_X86.format(fp32="tflite-fp32"),),
    caveat="for ARM devices: on x86 slower than tflite-fp32 where the CPU lacks VNNI (1.15x, mobilenet_v2, AVX2)",
))

TENSORRT = ONNX + (("tensorrt", "tensorrt"),)
ENGINE_NOTE = ("A TensorRT engine runs only on the GPU model and TensorRT version that built it; on a Jetson, "
               "export --target onnx elsewhere and run 'edgekit build-engine' on the device.")

register_target(Target(
    "tensorrt-fp16", "TensorRT FP16 engine for NVIDIA GPUs and Jetson, built on the GPU that runs it",
    (TO_ONNX, SIMPLIFY, Step("onnx -> tensorrt fp16 engine", "tensorrt:engine_fp16", "model.fp16.engine", "fp16")),
    requires=TENSORRT, probe="tensorrt:unavailable", fp16_risk_check=True, notes=(ENGINE_NOTE,),
))
register_target(Target(
    "tensorrt-int8", "TensorRT INT8 engine (entropy calibration) for NVIDIA GPUs and Jetson",
    (TO_ONNX, SIMPLIFY, Step("onnx -> tensorrt int8 engine", "tensorrt:engine_int8", "model.int8.engine", "int8")),
    requires=TENSORRT, probe="tensorrt:unavailable", calibrated=True, notes=(ENGINE_NOTE,),
))
register_target(Target(
    "tensorrt-fp16-torch2trt", "TensorRT FP16 engine through torch2trt (a second route, from the PyTorch module)",
    (Step("torch -> tensorrt fp16 engine (torch2trt)", "tensorrt:torch2trt_fp16", "model.torch2trt.engine", "fp16"),),
    requires=TORCH + (("tensorrt", "tensorrt"), ("torch2trt", "torch2trt")), probe="tensorrt:unavailable",
    fp16_risk_check=True, supports_dynamic_batch=False, notes=(ENGINE_NOTE,),
))
from edgekit.targets import openvino as _openvino  # noqa: E402,F401  (registers the OpenVINO targets)
from edgekit.targets import executorch as _executorch  # noqa: E402,F401  (registers the ExecuTorch targets)
