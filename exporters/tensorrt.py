"""TensorRT: an ONNX model to a serialized engine (FP16 or INT8), built on the GPU that will run it.

Written against the `tensorrt` Python API of version 10 (8.6 works too: only the network flag
differs). Engines are tied to the GPU and TensorRT version that built them, so the step
reports both, and the manifest's contract carries them to the runner, which refuses a mismatch.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.backends import require
from edgekit.gpu import DeviceMemory, device_info

WORKSPACE_MB = 2048
# CUDA cannot run in a process forked from one that initialised it: TensorRT steps start a fresh interpreter
# (see `edgekit.pipeline.forkserver`).
FRESH_PROCESS = True


@dataclass(frozen=True)
class BuildOptions:
    """How to build one engine. `max_batch` set means a dynamic batch with the profile (1, opt, max)."""

    precision: str
    batch: int = 1
    max_batch: int | None = None
    opt_batch: int = 1
    workspace_mb: int = WORKSPACE_MB
    timing_cache: str | None = None
    calibration_file: str | None = None
    fp32_layers: tuple[str, ...] = ()


def unavailable() -> str | None:
    """Why no engine can be built or run here (the GPU side; the `tensorrt` module is checked first)."""
    from edgekit.gpu import unavailable_reason

    return unavailable_reason()


def engine_fp16(onnx_file: Path, spec, out: Path) -> dict:
    """FP16 engine; layers the FP16 risk check flagged (spec.fp32_layers) are pinned to FP32."""
    return build_engine(onnx_file, out, _options(spec, "fp16"))


def engine_int8(onnx_file: Path, spec, out: Path) -> dict:
    """INT8 engine calibrated with the entropy calibrator on the export's calibration set."""
    return build_engine(onnx_file, out, _options(spec, "int8"))


def _options(spec, precision: str) -> BuildOptions:
    return BuildOptions(precision, spec.batch, spec.max_batch if spec.dynamic_batch else None, spec.opt_batch,
                        spec.workspace_mb, spec.timing_cache, spec.calibration_file, tuple(spec.fp32_layers))


class _Log:
    """Keeps TensorRT's errors and warnings, so a failed build can say why."""

    def __init__(self, trt) -> None:
        outer = self
        kept = (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR, trt.ILogger.Severity.WARNING)

        class Logger(trt.ILogger):
            def __init__(self) -> None:
                trt.ILogger.__init__(self)

            def log(self, severity, message) -> None:
                if severity in kept:
                    outer.lines.append(f"{severity.name}: {message}")
                    print(f"[tensorrt] {severity.name}: {message}", flush=True)

        self.lines: list[str] = []
        self.logger = Logger()

    def errors(self) -> str:
        return "\n".join(line for line in self.lines if not line.startswith("WARNING")) or "(TensorRT logged no error)"


def build_engine(onnx_file: Path, out: Path, options: BuildOptions) -> dict:
    """Parses the ONNX file, configures precision, profile, workspace and timing cache, and writes the plan."""
    trt = require("tensorrt", extra="tensorrt")
    log = _Log(trt)
    builder, network, parser = _parse(trt, log, onnx_file)  # the parser owns the weights until the build ends
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mb << 20)
    here = device_info(trt.__version__)
    info: dict = {"workspace_mb": options.workspace_mb, "device": here}
    profile = _profile(builder, network, config, options, info)
    notes = [f"Built for {here['gpu']} (compute capability {here['compute_capability']}), TensorRT {here['tensorrt']}, "
             f"CUDA {here['cuda']}: the engine runs only there."]
    # The FP16/INT8 flags and the implicit INT8 calibrator are deprecated in 10.x but work until 11.
    if options.precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
        info["fp32_layers"] = _pin_fp32(trt, network, config, options.fp32_layers, notes)
    elif options.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
    else:
        raise ValueError(f"unknown TensorRT precision {options.precision!r}")
    cache_file = Path(options.timing_cache) if options.timing_cache else default_timing_cache(here)
    reused = _attach_timing_cache(config, cache_file)
    plan = _build(trt, builder, network, config, profile, options, info)
    if plan is None:
        raise RuntimeError(f"TensorRT could not build the {options.precision} engine:\n{log.errors()}")
    Path(out).write_bytes(bytes(plan))
    updated = config.get_timing_cache()
    if updated is not None:
        _write_atomically(cache_file, bytes(updated.serialize()))
    info["timing_cache"] = {"file": str(cache_file), "reused": reused, "saved": updated is not None}
    del parser
    return {"info": info, "notes": notes,
            "contract": {"device": here, "batch": None if options.max_batch else options.batch}}


def _parse(trt, log: _Log, onnx_file: Path):
    """A builder and the network parsed from the ONNX file, refusing TensorRT versions edgekit does not build with."""
    major, minor = (int(part) for part in trt.__version__.split(".")[:2])
    if not (8, 6) <= (major, minor) < (11, 0):
        raise RuntimeError(f"TensorRT {trt.__version__} is not supported: edgekit builds with TensorRT 8.6 to 10.x "
                           "(TensorRT 11 removed the FP16/INT8 builder flags and implicit INT8 calibration)")
    builder = trt.Builder(log.logger)
    network = builder.create_network(0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
    parser = trt.OnnxParser(network, log.logger)
    if not parser.parse(Path(onnx_file).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT's ONNX parser rejected {onnx_file}: {errors}")
    return builder, network, parser


def _attach_timing_cache(config, cache_file: Path) -> bool:
    """Starts the build from the cache file when it exists; returns whether it did."""
    reused = cache_file.is_file()
    cache = config.create_timing_cache(cache_file.read_bytes() if reused else b"")
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        raise RuntimeError(f"TensorRT refused the timing cache {cache_file} (made on another GPU or TensorRT version?); "
                           "delete it or pass another --timing-cache")
    return reused


def _build(trt, builder, network, config, profile, options: BuildOptions, info: dict):
    """The serialized plan (None on failure); an INT8 build is fed the calibration set through device memory."""
    if options.precision != "int8":
        return builder.build_serialized_network(network, config)
    memory = DeviceMemory()
    calibrator = None
    try:
        calibrator = _calibrator(trt, np.load(options.calibration_file), info["profile"]["opt"], memory)
        config.int8_calibrator = calibrator
        if profile is not None:
            config.set_calibration_profile(profile)
        info["calibration"] = {"calibrator": "IInt8EntropyCalibrator2", "samples": calibrator.samples,
                               "batch": calibrator.batch}
        return builder.build_serialized_network(network, config)
    finally:
        if calibrator is not None:
            calibrator.buffer.free()
        memory.close()


def _profile(builder, network, config, options: BuildOptions, info: dict):
    """One optimization profile (min, opt, max batch) when the batch is dynamic; None for a fixed batch."""
    tensor = network.get_input(0)
    shape = tuple(tensor.shape)
    if options.max_batch is None:
        info["profile"] = {"min": options.batch, "opt": options.batch, "max": options.batch}
        return None
    if not 1 <= options.opt_batch <= options.max_batch:
        raise ValueError(f"opt batch {options.opt_batch} must lie between 1 and max batch {options.max_batch}")
    rest = shape[1:]
    profile = builder.create_optimization_profile()
    profile.set_shape(tensor.name, (1, *rest), (options.opt_batch, *rest), (options.max_batch, *rest))
    config.add_optimization_profile(profile)
    info["profile"] = {"min": 1, "opt": options.opt_batch, "max": options.max_batch}
    return profile


def _pin_fp32(trt, network, config, modules: tuple[str, ...], notes: list[str]) -> list[str]:
    """Keeps the float layers of the named PyTorch modules in FP32; notes modules that matched no layer."""
    if not modules:
        return []
    scopes = {module: onnx_scope(module) for module in modules}
    floats = (trt.float32, trt.float16)
    pinned, matched = [], set()
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        owners = [module for module, scope in scopes.items() if scope in layer.name]
        outputs = [layer.get_output(i) for i in range(layer.num_outputs)]
        if not owners or not outputs or any(output.dtype not in floats for output in outputs):
            continue
        layer.precision = trt.float32
        for i in range(layer.num_outputs):
            layer.set_output_type(i, trt.float32)
        pinned.append(layer.name)
        matched.update(owners)
    if pinned:
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    missed = [module for module in modules if module not in matched]
    if missed:
        notes.append(f"No TensorRT layer matched these modules, so they were not kept in FP32: {', '.join(missed)}")
    return pinned


def onnx_scope(module: str) -> str:
    """The scope PyTorch's ONNX exporter writes in node names for a dotted module name.

    Container indices join their parent's name ("features.0"), other names stand alone:
    `layer1.0.conv1` -> "/layer1/layer1.0/conv1/", `features.0.0` -> "/features/features.0/features.0.0/".
    """
    parts: list[str] = []
    for component in module.split("."):
        parts.append(f"{parts[-1]}.{component}" if component.isdigit() and parts else component)
    return "/" + "/".join(parts) + "/"


def _calibrator(trt, data: np.ndarray, batch: int, memory: DeviceMemory):
    """An entropy calibrator feeding `data` (preprocessed NCHW float32) in batches of `batch`."""

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.batch = batch
            self.chunks = [data[i:i + batch] for i in range(0, len(data) - batch + 1, batch)]
            self.samples = len(self.chunks) * batch
            self.position = 0
            self.buffer = memory.empty((batch, *data.shape[1:]), np.float32)

        def get_batch_size(self) -> int:
            return self.batch

        def get_batch(self, names):
            if self.position == len(self.chunks):
                return None
            self.buffer.write(self.chunks[self.position])
            memory.synchronize()
            self.position += 1
            return [self.buffer.ptr]

        def read_calibration_cache(self):
            return None

        def write_calibration_cache(self, cache) -> None:
            return None

    if len(data) < batch:
        raise ValueError(f"{len(data)} calibration samples cannot fill one batch of {batch}")
    return EntropyCalibrator()


def default_timing_cache(device: dict[str, str]) -> Path:
    """A timing cache per GPU model and TensorRT version, reused by every later build there."""
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgekit" / "tensorrt"
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", f"{device['gpu']}-sm{device['compute_capability']}-trt{device['tensorrt']}")
    return root / f"{slug}.timing-cache"


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def torch2trt_fp16(model, spec, out: Path) -> dict:
    """The torch2trt route: converts the PyTorch module layer by layer into an FP16 engine (fixed batch)."""
    import torch

    trt = require("tensorrt", extra="tensorrt")
    from torch2trt import torch2trt

    size = spec.card.input_size
    example = torch.randn(spec.batch, 3, size, size, generator=torch.Generator().manual_seed(0)).cuda()
    # No max_batch_size: torch2trt would turn it into a (1, batch, batch) profile; the example fixes the batch.
    module = torch2trt(model.cuda().eval(), [example], fp16_mode=True)
    if module.engine is None:
        raise RuntimeError("torch2trt could not build an engine; its log above says which layer failed")
    Path(out).write_bytes(bytes(module.engine.serialize()))
    here = device_info(trt.__version__)
    notes = [f"Built by torch2trt for {here['gpu']}, TensorRT {here['tensorrt']}: the engine runs only there.",
             "torch2trt sets no workspace limit on TensorRT 10; TensorRT used what it needed."]
    if spec.fp32_layers:
        notes.append("torch2trt cannot pin layers to FP32; the FP16 risk check flagged: " + ", ".join(spec.fp32_layers))
    return {"info": {"route": "torch2trt", "device": here}, "notes": notes,
            "contract": {"device": here, "batch": spec.batch}}
