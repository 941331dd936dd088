"""TensorRT engines: real builds where TensorRT and a GPU exist; elsewhere, the refusals a user sees.

Nothing is faked: without TensorRT the engine tests skip with the target's own reason, and what
runs here is the behaviour of a machine without it (exit code 4, the missing piece named).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgekit.gpu import compatibility_problem
from edgekit.targets import get_target

TENSORRT_MISSING = get_target("tensorrt-fp16").unavailable_reason()
needs_tensorrt = pytest.mark.skipif(TENSORRT_MISSING is not None,
                                    reason=f"TensorRT engines cannot be built here: {TENSORRT_MISSING}")

JETSON = {"gpu": "Orin", "compute_capability": "8.7", "cuda": "12.6", "tensorrt": "10.3.0"}


def edgekit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgekit.cli", *args], capture_output=True, text=True, timeout=600)


def test_an_engine_runs_only_where_it_was_built() -> None:
    assert compatibility_problem(JETSON, dict(JETSON)) is None
    other_gpu = compatibility_problem(JETSON, JETSON | {"gpu": "NVIDIA GeForce RTX 4090", "compute_capability": "8.9"})
    assert "GPU 'Orin' (here: 'NVIDIA GeForce RTX 4090')" in other_gpu
    assert "compute capability '8.7' (here: '8.9')" in other_gpu and "edgekit build-engine" in other_gpu
    other_trt = compatibility_problem(JETSON, JETSON | {"tensorrt": "10.7.0"})
    assert other_trt.startswith("this engine was built for TensorRT '10.3.0' (here: '10.7.0')")
    assert "does not record" in compatibility_problem(None, JETSON)


@pytest.mark.skipif(TENSORRT_MISSING is None, reason="TensorRT is installed here; the engine tests cover it")
def test_without_tensorrt_targets_say_why_and_export_exits_4(tmp_path: Path) -> None:
    rows = {row["name"]: row for row in json.loads(edgekit("targets", "--json").stdout)}
    for name in ("tensorrt-fp16", "tensorrt-int8", "tensorrt-fp16-torch2trt"):
        assert rows[name]["available"] is False and rows[name]["reason"]
    result = edgekit("export", "mobilenet_v2", "--target", "tensorrt-int8", "--out", str(tmp_path))
    assert result.returncode == 4
    assert "target tensorrt-int8 is unavailable here" in result.stderr and TENSORRT_MISSING in result.stderr
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
@pytest.mark.xdist_group("mobilenet_v2")
def test_build_engine_checks_its_onnx_artifact_before_anything_else(exported, tmp_path: Path) -> None:
    onnx = exported("mobilenet_v2", "onnx", weights="imagenet").directory
    if TENSORRT_MISSING is not None:
        result = edgekit("build-engine", str(onnx), "--fp16", "--out", str(tmp_path))
        assert result.returncode == 4, result.stderr
        assert "build-engine needs" in result.stderr and not any(tmp_path.iterdir())
    tflite = exported("mobilenet_v2", "tflite-int8", weights="imagenet").directory
    result = edgekit("build-engine", str(tflite), "--int8", "--out", str(tmp_path))
    assert result.returncode == 2 and "build-engine needs an 'onnx' artifact" in result.stderr
    copied = tmp_path / "copied-onnx"
    copied.mkdir()
    (copied / "manifest.json").write_bytes((onnx / "manifest.json").read_bytes())
    (copied / "model.onnx").write_bytes((onnx / "model.onnx").read_bytes()[:-16])
    result = edgekit("build-engine", str(copied), "--fp16", "--out", str(tmp_path))
    assert result.returncode == 2 and "changed since export" in result.stderr


@pytest.mark.slow
@pytest.mark.xdist_group("mobilenet_v2")
def test_predict_needs_no_pytorch(exported_without_torch) -> None:
    result = exported_without_torch
    assert result.returncode == 0, result.stderr
    assert "Egyptian cat" in result.stdout or "tabby" in result.stdout


@pytest.fixture
def exported_without_torch(exported, tmp_path: Path) -> subprocess.CompletedProcess:
    """`edgekit predict` on an ONNX artifact in a process where importing torch fails, as on a bare device."""
    from edgekit.calibration import demo_image

    artifact = exported("mobilenet_v2", "onnx", weights="imagenet").directory
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text("import sys\nsys.modules['torch'] = sys.modules['torchvision'] = None  # as if not installed\n")
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "edgekit.cli", "predict", str(artifact), demo_image(), "--topk", "2"],
                          capture_output=True, text=True, timeout=300, env=env)


@needs_tensorrt
@pytest.mark.tensorrt
@pytest.mark.parametrize("target", ["tensorrt-fp16", "tensorrt-int8"])
def test_engine_verifies_and_records_its_device(exported, target: str) -> None:
    artifact = exported("mobilenet_v2", target, weights="imagenet")
    manifest = artifact.manifest
    assert artifact.status == "verified"
    device = manifest["contract"]["device"]
    assert device["gpu"] and device["compute_capability"] and device["cuda"] and device["tensorrt"]
    build = manifest["steps"][-1]["info"]
    assert build["profile"] == {"min": 1, "opt": 1, "max": 1} and build["workspace_mb"] == 2048
    assert Path(build["timing_cache"]["file"]).is_file()
    if target == "tensorrt-fp16":
        assert "worst_layer" in manifest["fp16_risk"]


@needs_tensorrt
@pytest.mark.tensorrt
def test_dynamic_batch_engine_records_its_profile_and_runs_up_to_max(exported) -> None:
    from edgekit.contract import Contract
    from edgekit.runners import runner_for

    artifact = exported("shufflenet_v2_x0_5", "tensorrt-fp16", dynamic_batch=True, max_batch=8, opt_batch=4)
    assert artifact.manifest["steps"][-1]["info"]["profile"] == {"min": 1, "opt": 4, "max": 8}
    with runner_for(artifact.file, Contract.from_dict(artifact.manifest["contract"])) as runner:
        assert runner.max_batch == 8
        assert runner.infer(np.zeros((19, 3, 224, 224), np.float32)).shape == (19, 1000)


@needs_tensorrt
@pytest.mark.tensorrt
def test_engine_from_another_gpu_is_refused_by_name(exported, tmp_path: Path) -> None:
    from edgekit.contract import Contract
    from edgekit.errors import EngineMismatchError
    from edgekit.runners import runner_for

    artifact = exported("mobilenet_v2", "tensorrt-fp16", weights="imagenet")
    recorded = artifact.manifest["contract"]
    foreign = Contract.from_dict(recorded | {"device": recorded["device"] | {"gpu": "Orin", "compute_capability": "8.7"}})
    with pytest.raises(EngineMismatchError, match="this engine was built for GPU 'Orin'"):
        with runner_for(artifact.file, foreign):
            pass


@needs_tensorrt
@pytest.mark.tensorrt
def test_build_engine_on_the_device_from_an_onnx_artifact(exported, tmp_path: Path) -> None:
    onnx = exported("mobilenet_v2", "onnx", weights="imagenet").directory
    result = edgekit("build-engine", str(onnx), "--fp16", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "mobilenet_v2-tensorrt-fp16" / "manifest.json").read_text())
    assert manifest["status"] == "verified" and manifest["built_from"]["artifact_sha256"]
    assert manifest["parity"]["steps"][-1]["metrics"]["cosine_mean"] > 0.999


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mobilenet_v2", "shufflenet_v2_x0_5", "effnet_b0"])
def test_fp32_pinning_finds_every_module_in_the_onnx_node_names(exported, model: str) -> None:
    # FP16 engines keep flagged PyTorch modules in FP32 by matching their scope in TensorRT layer names,
    # which the ONNX parser takes from the node names of the simplified ONNX file checked here.
    import onnx
    from torch import nn

    from edgekit.exporters.tensorrt import onnx_scope
    from edgekit.models import create_model

    weights = "imagenet" if model == "mobilenet_v2" else None
    names = [node.name for node in onnx.load(str(exported(model, "onnx", weights=weights).file)).graph.node]
    folded = (nn.BatchNorm2d, nn.Dropout, nn.Identity, nn.Sequential)  # an empty Sequential computes nothing
    leaves = [name for name, module in create_model(model).named_modules()
              if name and not list(module.children()) and not isinstance(module, folded)]
    assert len(leaves) > 40
    unmatched = [name for name in leaves if not any(onnx_scope(name) in node for node in names)]
    assert unmatched == []
