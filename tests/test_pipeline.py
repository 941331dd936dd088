"""Export mechanics: atomic placement, clean failures, option checks, exit codes, and re-verification."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from edgekit import export, verify
from edgekit.errors import ExportError, InvalidSpecError, MissingBackendError, ParityError, UnknownTargetError, WeightsError
from edgekit.models import create_model
from edgekit.manifest import sha256_file
from edgekit.pipeline.export import check_backends
from edgekit.targets import Step, Target

SMALL = "shufflenet_v2_cifar_x0_5"
REPO = Path(__file__).resolve().parents[1]


def test_existing_artifact_needs_force_and_survives_a_failed_replacement(tmp_path: Path) -> None:
    first = export(SMALL, "onnx", out=tmp_path, progress=False)
    before = sha256_file(first.file)
    with pytest.raises(InvalidSpecError, match="already exists; pass --force"):
        export(SMALL, "onnx", out=tmp_path, progress=False)
    with pytest.raises(ExportError, match="time limit"):
        export(SMALL, "onnx", out=tmp_path, progress=False, force=True, timeout=0.5)
    assert sha256_file(first.file) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{SMALL}-onnx", f"{SMALL}-onnx.export-failed.log"]


def test_failed_export_leaves_nothing_at_the_output_path(tmp_path: Path) -> None:
    with pytest.raises(ExportError) as info:
        export(SMALL, "torchscript", out=tmp_path, progress=False, timeout=0.5)
    assert "Log:" in str(info.value)
    assert [p.name for p in tmp_path.iterdir()] == [f"{SMALL}-torchscript.export-failed.log"]


def test_force_replaces_atomically(tmp_path: Path) -> None:
    first = export(SMALL, "onnx", out=tmp_path, progress=False)
    second = export(SMALL, "onnx", out=tmp_path, progress=False, force=True, num_classes=7)
    assert second.manifest["export"]["num_classes"] == 7
    # each step records its conversion time and, apart, the time its verification took
    assert all(s["seconds"] > 0 and s["verify_seconds"] > 0 for s in first.manifest["steps"])
    assert [p.name for p in tmp_path.iterdir()] == [f"{SMALL}-onnx"]


def test_steps_side_by_side_share_the_cores(tmp_path: Path, monkeypatch) -> None:
    """Two steps at once each took a thread per core: four spinning OpenMP threads on two cores made a 0.7 s step 5.5 s."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    cores = os.cpu_count() or 1
    together = export(SMALL, ["torchscript", "onnx"], out=tmp_path / "two", jobs=2, progress=False)
    assert [a.manifest["steps"][0]["threads"] for a in together.values()] == [max(1, cores // 2)] * 2
    alone = export(SMALL, "onnx", out=tmp_path / "one", jobs=1, progress=False)
    assert alone.manifest["steps"][0]["threads"] == cores
    chain = export(SMALL, "onnx", out=tmp_path / "chain", jobs=2, progress=False)  # one step at a time: all cores
    assert chain.manifest["steps"][0]["threads"] == cores
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's choice stands (PyTorch caps it at the cores)
    chosen = export(SMALL, "onnx", out=tmp_path / "three", jobs=2, progress=False)
    assert chosen.manifest["steps"][0]["threads"] == min(3, cores)


def test_steps_are_forked_by_one_server_and_a_killed_step_is_named(tmp_path: Path) -> None:
    """Each step is a child of the step server, in a session of its own; a step killed by a signal fails alone."""
    import signal

    from edgekit.pipeline.execute import Executor, Job
    from edgekit.pipeline.spec import ExportSpec

    spec = ExportSpec(model="mobilenet_v2", target="onnx")
    executor = Executor(2)
    try:
        for key in ("a", "b"):
            (tmp_path / key).mkdir()
            executor.start(Job(key, "onnx:export_onnx", "model", tmp_path / key / "model.onnx", spec, tmp_path / f"{key}.log"))
        children = {key: executor.running[key].process.pid for key in ("a", "b")}
        server = executor.server.process.pid
        for pid in children.values():
            assert os.getsid(pid) == pid
            assert int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) == server
            if not any(name.startswith("MALLOC_") for name in os.environ):  # the allocator settings reach each step
                assert b"\0MALLOC_MMAP_MAX_=0\0" in Path(f"/proc/{pid}/environ").read_bytes()
        os.kill(children["a"], signal.SIGKILL)
        done = {}
        while executor.running:
            done.update({d.job.key: d for d in executor.wait()})
    finally:
        executor.stop_all()
    assert "was killed by signal 9" in str(done["a"].error) and str(tmp_path / "a.log") in str(done["a"].error)
    assert done["b"].error is None and (tmp_path / "b" / "model.onnx").stat().st_size > 10_000_000
    assert executor.server.process.poll() is not None, "the server ends with the export"


def test_freed_memory_is_kept_for_reuse() -> None:
    """glibc handed every freed activation back to the kernel and the next pass faulted its pages in again: 428,000-
    456,000 page faults for six passes of mobilenet_v2 over 8 images, 0-1,639 with `keep_freed_memory` (2026-12-07).
    The CLI applies it to itself, the step server's environment to every step; a user's `MALLOC_*` stands."""
    from edgekit.pipeline.allocator import allocator_env

    own = {name: value for name, value in os.environ.items() if not name.startswith("MALLOC_")}

    def faults(how: str, env: dict[str, str]) -> tuple[bool | None, int]:
        out = subprocess.run([sys.executable, str(REPO / "scripts" / "kept_memory.py"), "mobilenet_v2", "--how", how],
                             env=env, capture_output=True, text=True, check=True, cwd=REPO).stdout
        result = json.loads(out)
        return result["applied"], result["page_faults"]

    applied, default = faults("none", own)
    assert applied is None and default > 50_000
    assert faults("mallopt", own) == (True, pytest.approx(0, abs=default / 10))
    assert faults("none", allocator_env(own)) == (None, pytest.approx(0, abs=default / 10))  # read at start-up
    users = dict(own, MALLOC_ARENA_MAX="2")
    assert allocator_env(users) == users
    applied, count = faults("mallopt", users)
    assert applied is False and count > default / 2


def test_a_step_whose_server_dies_says_so(tmp_path: Path) -> None:
    """Killing the step server kills its children (their death signal); the step's error names the server's death."""
    import signal

    from edgekit.pipeline.execute import Executor, Job
    from edgekit.pipeline.spec import ExportSpec

    executor = Executor(1)
    try:
        executor.start(Job("a", "onnx:export_onnx", "model", tmp_path / "model.onnx",
                           ExportSpec(model="mobilenet_v2", target="onnx"), tmp_path / "a.log"))
        server = executor.server.process.pid
        os.kill(server, signal.SIGKILL)
        done = executor.wait()
    finally:
        executor.stop_all()
    message = str(done[0].error)
    assert f"the step server (pid {server}) was killed by signal 9 while the step ran" in message, message
    assert str(tmp_path / "a.log") in message


def test_an_edgekit_error_inside_a_step_reaches_the_caller_typed(tmp_path: Path) -> None:
    """A step that stops on an edgekit error (here the weights file vanished after the export checked it) raises
    that error in the parent, with its exit code and message and the step's log named; the traceback stays in
    the log. It used to read "exited with code 1", the traceback, exit 1."""
    from edgekit.errors import WeightsError
    from edgekit.pipeline.execute import run_step
    from edgekit.pipeline.spec import ExportSpec

    spec = ExportSpec(model=SMALL, target="onnx", weights="gone.pth", weights_file=str(tmp_path / "gone.pth"))
    with pytest.raises(WeightsError) as raised:
        run_step("onnx:export_onnx", "model", tmp_path / "model.onnx", spec, tmp_path / "step.log")
    message = str(raised.value)
    assert raised.value.exit_code == 2 and "gone.pth" in message and "Traceback" not in message, message
    assert message.endswith(f"The step's log: {tmp_path / 'step.log'}")
    assert "Traceback" in (tmp_path / "step.log").read_text()
    assert not list(tmp_path.glob("*.error")) and not (tmp_path / "model.onnx").exists()


def test_a_cuda_step_starts_a_fresh_interpreter(tmp_path: Path) -> None:
    """TensorRT's steps (FRESH_PROCESS) run `python -m edgekit.pipeline.worker`, not in a forked copy of the server."""
    import json

    from edgekit.pipeline.forkserver import ForkServer
    from edgekit.pipeline.spec import ExportSpec

    request = tmp_path / "request.json"
    request.write_text(json.dumps({"exporter": "tensorrt:engine_fp16", "input": str(tmp_path / "missing.onnx"),
                                   "output": str(tmp_path / "model.engine"), "result": str(tmp_path / "result.json"),
                                   "spec": ExportSpec(model=SMALL, target="tensorrt-fp16").to_dict(), "verify": None}))
    server = ForkServer(tmp_path, dict(os.environ), tmp_path / "server.log")
    try:
        code = server.fork("k", request, tmp_path / "step.log", tmp_path, "tensorrt:engine_fp16").wait(120)
    finally:
        server.close()
    if code == 4:  # no TensorRT here: its typed error is left beside the result for the parent, in __main__ too
        assert json.loads((tmp_path / "result.json.error").read_text())["type"] == "MissingBackendError"
    else:  # TensorRT installed: it fails on the missing ONNX file
        assert code == 1
    log = (tmp_path / "step.log").read_text()
    assert 'edgekit/pipeline/worker.py", line' in log and "in <module>" in log, log  # run as __main__


def test_a_new_untrained_head_is_said_and_recorded(tmp_path: Path, capsys) -> None:
    """Weights with --num-classes N of another count: the export used to record only the weights' source, as if the
    artifact's N classes were trained."""
    torch.save(create_model(SMALL).state_dict(), tmp_path / "ten.pth")
    artifact = export(SMALL, "onnx", weights=tmp_path / "ten.pth", num_classes=3, out=tmp_path / "out")
    assert artifact.manifest["weights"]["new_head"] == {"module": "fc", "checkpoint_classes": 10, "classes": 3,
                                                        "trained": False}
    assert "fc is a new, untrained 3-class head in place of the checkpoint's 10 classes" in capsys.readouterr().err
    same = export(SMALL, "onnx", weights=tmp_path / "ten.pth", num_classes=10, out=tmp_path / "same")
    assert "new_head" not in same.manifest["weights"]


def test_parity_failure_is_kept_aside_and_marked(tmp_path: Path) -> None:
    with pytest.raises(ParityError, match="parity broke at step 'onnxsim'") as info:
        export(SMALL, "onnx", out=tmp_path, progress=False, tolerance={"atol": 0.0, "rtol": 0.0})
    failed = info.value.artifact
    assert failed.directory == tmp_path / f"{SMALL}-onnx.parity-failed"
    assert json.loads((failed.directory / "manifest.json").read_text())["status"] == "parity-failed"
    assert not (tmp_path / f"{SMALL}-onnx").exists()


@pytest.mark.parametrize("options, message", [
    ({"target": "tflite-fp32", "dynamic_batch": True}, "--dynamic-batch is not supported by tflite-fp32"),
    ({"target": "onnx", "dynamic_batch": True, "batch": 4}, "conflict"),
    ({"target": "onnx", "calib": "x.npy"}, "--calib applies to calibrated targets only"),
    ({"target": "onnx", "io_dtype": "float32"}, "--io-dtype applies to tflite-int8 only"),
    ({"target": "onnx", "batch": 0}, "--batch must be at least 1"),
])
def test_conflicting_options_are_refused(tmp_path: Path, options: dict, message: str) -> None:
    target = options.pop("target")
    with pytest.raises(InvalidSpecError, match=message):
        export(SMALL, target, out=tmp_path, progress=False, **options)
    assert not any(tmp_path.iterdir())


def test_unknown_target_suggests_one() -> None:
    with pytest.raises(UnknownTargetError, match="Did you mean 'tflite-int8'"):
        export(SMALL, "tflite-int9")


def test_missing_backend_names_the_extra() -> None:
    target = Target("needs-absent", "test", (Step("x", "onnx:export_onnx", "m.onnx", "fp32"),),
                    requires=(("edgekit_absent_backend", "onnx"),))
    with pytest.raises(MissingBackendError, match=r"needs edgekit_absent_backend, which is not installed.*pip install 'edgekit\[onnx\]'"):
        check_backends(target)


def test_reverify_rebuilds_the_reference_and_refuses_other_weights(tmp_path: Path) -> None:
    weights = tmp_path / "w.pth"
    torch.save(create_model(SMALL, seed=5).state_dict(), weights)
    artifact = export(SMALL, "onnx", weights=str(weights), out=tmp_path / "out", progress=False)
    report = verify(artifact.directory)
    assert report.passed and report.steps[0].metrics.failed_elements == 0
    torch.save(create_model(SMALL, seed=6).state_dict(), weights)
    with pytest.raises(WeightsError, match="refusing to compare it with other weights"):
        verify(artifact.directory)


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgekit.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def test_cli_exit_codes(tmp_path: Path) -> None:
    ok = cli("export", SMALL, "--target", "onnx", "--out", "o", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip().endswith(f"{SMALL}-onnx/model.onnx")
    assert "[2/2] onnxsim" in ok.stderr and "verified" in ok.stderr
    assert cli("export", SMALL, "--target", "onnx", "--out", "o", cwd=tmp_path).returncode == 2
    unknown = cli("export", SMALL, "--target", "onx", "--out", "o", cwd=tmp_path)
    assert unknown.returncode == 2 and "Did you mean 'onnx'" in unknown.stderr
    failed = cli("export", SMALL, "--target", "onnx", "--out", "o2", "--atol", "0", "--rtol", "0", cwd=tmp_path)
    assert failed.returncode == 3 and "parity broke" in failed.stderr
    again = cli("verify", f"o/{SMALL}-onnx", "--json", cwd=tmp_path)
    assert again.returncode == 0 and json.loads(again.stdout)["passed"] is True


def test_targets_listing(tmp_path: Path) -> None:
    result = cli("targets", "--json", cwd=tmp_path)
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    from edgekit.targets import list_targets

    assert result.returncode == 0 and list(rows) == list_targets() and len(rows) >= 19
    # Everything but the GPU targets, the XNNPACK-less mobile target and bf16 (which needs a CPU with it) runs here.
    cpu_targets = [name for name in rows if name not in ("torchscript-mobile", "openvino-bf16")
                   and not name.startswith("tensorrt")]
    assert all(rows[name]["available"] for name in cpu_targets), [n for n in cpu_targets if not rows[n]["available"]]
    assert all(rows[name]["reason"] for name in rows if not rows[name]["available"])
    assert rows["tflite-int8"]["steps"][-1] == "tflite fp32 -> full int8"
