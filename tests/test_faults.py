"""The fault suite: bad input, damaged or altered artifacts, interruptions, a full disk, a rival export.

Every case goes through the `edgekit` command and asserts three things: the exit code, the first
words of the message on stderr, and what is left on disk. Nothing here is mocked: the converters,
the runtimes, the signals and the full file system are real.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgekit.calibration import bundled_images, demo_image
from edgekit.cli import main

pytestmark = pytest.mark.xdist_group("faults")

MODEL = "mobilenet_v2"
EDGEKIT = [sys.executable, "-m", "edgekit.cli"]


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    """Runs `edgekit ARGV` in this process; returns the exit code and stderr."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def leftovers(out: Path) -> list[str]:
    """Names in an output folder other than finished artifacts: work folders and partial files."""
    return sorted(p.name for p in out.iterdir() if p.name.startswith(".")) if out.exists() else []


def tree_digest(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def onnx_artifact(tmp_path_factory) -> Path:
    """A verified mobilenet_v2 (ImageNet) ONNX artifact; tests copy it before they damage anything."""
    from edgekit import export

    out = tmp_path_factory.mktemp("faults-onnx")
    return export(MODEL, "onnx", weights="imagenet", out=out, progress=False).directory


@pytest.fixture
def artifact_copy(onnx_artifact, tmp_path) -> Path:
    copy = tmp_path / onnx_artifact.name
    shutil.copytree(onnx_artifact, copy)
    return copy


@pytest.fixture
def broken_image(tmp_path) -> Path:
    path = tmp_path / "broken.jpg"
    path.write_bytes(demo_image().read_bytes()[:600])  # a JPEG cut off in transit
    return path


# --- bad input -------------------------------------------------------------------------------------


def test_unreadable_image_given_to_predict(capsys, artifact_copy, broken_image) -> None:
    code, err = run_cli(capsys, "predict", artifact_copy, demo_image(), broken_image)
    assert code == 2
    assert err.startswith("edgekit: error: 1 of 2 image files cannot be read")
    assert str(broken_image) in err and "nothing was processed" in err


def test_a_family_of_which_nothing_can_run_is_a_missing_backend(capsys, tmp_path) -> None:
    """`--target tensorrt` on a machine without TensorRT used to skip all three targets and exit 0, exporting nothing."""
    from edgekit.targets import get_target, list_targets

    if any(get_target(name).unavailable_reason() is None for name in list_targets() if name.startswith("tensorrt")):
        pytest.skip("TensorRT is installed here")
    code, err = run_cli(capsys, "export", MODEL, "--target", "tensorrt", "--out", tmp_path / "out")
    assert code == 4
    assert "none of the targets chosen by 'tensorrt' can run here (tensorrt-fp16: needs tensorrt" in err
    assert not (tmp_path / "out").exists()
    # bench took only names, and measured PyTorch eager before reporting three "unavailable" rows with exit 0
    code, err = run_cli(capsys, "bench", MODEL, "--targets", "tensorrt", "--out", tmp_path / "bench")
    assert code == 4 and "none of the targets to bench can run here (tensorrt-fp16: needs tensorrt" in err
    assert not (tmp_path / "bench").exists()


def test_a_reader_that_goes_away_stops_the_cli_quietly() -> None:
    """`edgekit targets | head -1`: stdout's reader closes early; exit 141 (128 + SIGPIPE) and nothing on stderr."""
    process = subprocess.Popen([sys.executable, "-m", "edgekit.cli", "targets"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    process.stdout.close()
    err = process.stderr.read().decode()
    assert process.wait(timeout=300) == 141, err
    assert err == ""


def test_a_partial_failure_keeps_its_exit_code_when_stdout_is_closed(tmp_path) -> None:
    """An export with one verified and one refused target prints the verified file; if nobody reads it, the
    BrokenPipeError used to escape the handler as a traceback. Now: the failure's exit code and message."""
    command = [sys.executable, "-m", "edgekit.cli", "export", "shufflenet_v2_cifar_x0_5", "--target", "onnx,onnx-int8",
               "--out", str(tmp_path)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()
    err = process.stderr.read().decode()
    assert process.wait(timeout=600) == 3, err
    assert "int8 cannot be judged" in err and "Traceback" not in err and "unexpected" not in err
    assert (tmp_path / "shufflenet_v2_cifar_x0_5-onnx" / "manifest.json").is_file()


@pytest.mark.parametrize("option", ["--calib", "--data"])
def test_unreadable_image_in_a_folder_refuses_the_run(capsys, tmp_path, broken_image, option) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    for photo in bundled_images()[:3]:
        (folder / photo.name).symlink_to(photo)
    (folder / "zz-empty.png").write_bytes(b"")
    shutil.move(broken_image, folder / broken_image.name)
    out = tmp_path / "out"
    code, err = run_cli(capsys, "export", MODEL, "--target", "onnx-int8", "--out", out, option, folder)
    assert code == 2
    assert "2 of 5 image files cannot be read" in err
    assert "broken.jpg" in err and "zz-empty.png" in err
    assert not out.exists() or list(out.iterdir()) == []


def test_manifest_that_is_not_json(capsys, artifact_copy) -> None:
    (artifact_copy / "manifest.json").write_text('{"model": "mobilenet_v2", ')
    for command in ("predict", "verify"):
        args = [command, artifact_copy] + ([demo_image()] if command == "predict" else [])
        code, err = run_cli(capsys, *args)
        assert code == 2, command
        assert "manifest.json is not valid JSON" in err


def test_manifest_that_names_another_model(capsys, artifact_copy) -> None:
    manifest = json.loads((artifact_copy / "manifest.json").read_text())
    manifest["model"] = "effnet_b0"
    (artifact_copy / "manifest.json").write_text(json.dumps(manifest))
    code, err = run_cli(capsys, "verify", artifact_copy)
    assert code == 2
    assert "names model 'effnet_b0' but its card is 'mobilenet_v2'" in err


def test_artifact_of_an_earlier_seeded_init_is_refused_by_verify(capsys, tmp_path) -> None:
    """Manifests written before the seeded init's version 2 record no `init`: that reference cannot be rebuilt."""
    from edgekit import export

    artifact = export("shufflenet_v2_cifar_x0_5", "onnx", out=tmp_path, progress=False).directory
    code, _ = run_cli(capsys, "verify", artifact)
    assert code == 0
    manifest = json.loads((artifact / "manifest.json").read_text())
    del manifest["weights"]["init"]
    (artifact / "manifest.json").write_text(json.dumps(manifest))
    code, err = run_cli(capsys, "verify", artifact)
    assert code == 2
    assert "exported from an earlier version of edgekit's seeded random init" in err and "Export it again" in err

def test_output_path_through_a_file(capsys, tmp_path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    code, err = run_cli(capsys, "export", MODEL, "--target", "onnx", "--out", blocker / "out")
    assert code == 2
    assert f"{blocker} is a file, not a folder" in err
    assert blocker.read_text() == "x"


def test_non_finite_calibration_array_is_refused_before_conversion(capsys, tmp_path) -> None:
    data = np.zeros((4, 3, 224, 224), np.float32)
    data[2, 0, 5, 5] = np.nan
    data[3, 1, 0, 0] = np.inf
    np.save(tmp_path / "calib.npy", data)
    out = tmp_path / "out"
    code, err = run_cli(capsys, "export", MODEL, "--target", "onnx-int8", "--calib", tmp_path / "calib.npy", "--out", out)
    assert code == 2
    assert "holds 2 NaN or infinite values (in samples 2, 3)" in err
    assert leftovers(out) == [] and not (out / f"{MODEL}-onnx-int8").exists()


def test_non_finite_weights_are_refused_as_weights(capsys, tmp_path) -> None:
    import torch

    from edgekit import create_model

    state = create_model(MODEL).state_dict()
    state["features.3.conv.1.0.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, tmp_path / "diverged.pth")
    out = tmp_path / "out"
    code, err = run_cli(capsys, "export", MODEL, "--target", "onnx", "--weights", tmp_path / "diverged.pth", "--out", out)
    assert code == 2
    assert "holds NaN or infinite values in 1 tensors (features.3.conv.1.0.weight)" in err
    assert leftovers(out) == []


@pytest.mark.parametrize("argv, message", [
    (["--calib-size", "0"], "--calib-size must be at least 1"),
    (["--batch", "0"], "--batch must be at least 1"),
    (["--jobs", "0"], "--jobs must be at least 1"),  # was taken as 1 without a word
    (["--input-size", "100000"], "input size must be at most 1024"),  # was killed for memory, leaving .partial folders
    (["--calib", "/nonexistent/calib.npy"], "calibration file '/nonexistent/calib.npy' does not exist"),
])
def test_bad_options(capsys, tmp_path, argv, message) -> None:
    code, err = run_cli(capsys, "export", MODEL, "--target", "onnx-int8", "--out", tmp_path / "out", *argv)
    assert code == 2 and message in err


@pytest.mark.parametrize("option", ["--runs", "--threads", "--rounds"])
def test_bench_refuses_a_count_below_one(capsys, tmp_path, option) -> None:
    code, err = run_cli(capsys, "bench", MODEL, "--targets", "onnx", option, "0", "--out", tmp_path / "bench")
    assert code == 2 and "--runs, --threads and --rounds must be at least 1" in err
    assert not (tmp_path / "bench").exists()


# --- altered artifacts --------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncated", "one byte changed", "removed"])
def test_altered_artifact_is_refused_before_it_loads(capsys, artifact_copy, damage) -> None:
    model = artifact_copy / "model.onnx"
    data = bytearray(model.read_bytes())
    if damage == "truncated":
        model.write_bytes(data[: len(data) // 2])
    elif damage == "one byte changed":
        data[len(data) // 2] ^= 0x01
        model.write_bytes(data)
    else:
        model.unlink()
    for args in (["predict", artifact_copy, demo_image()], ["verify", artifact_copy],
                 ["build-engine", artifact_copy, "--fp16"]):
        code, err = run_cli(capsys, *args)
        assert code == 2, (args[0], err)
        expected = "is missing; its manifest lists it" if damage == "removed" else "changed since export"
        assert expected in err, (args[0], err)


def test_signed_artifact_refused_after_one_byte_changes(capsys, artifact_copy, tmp_path) -> None:
    pytest.importorskip("model_signing", reason="model-signing is not installed (extra 'signing')")
    key, public, other = tmp_path / "key.pem", tmp_path / "key.pub", tmp_path / "other.pub"
    _key_pair(key, public)
    _key_pair(tmp_path / "other.pem", other)
    code, err = run_cli(capsys, "predict", artifact_copy, demo_image(), "--require-signature", public)
    assert code == 2 and "is not signed (no edgekit.sig)" in err
    assert run_cli(capsys, "sign", artifact_copy, "--key", key)[0] == 0
    assert run_cli(capsys, "predict", artifact_copy, demo_image(), "--require-signature", public)[0] == 0
    code, err = run_cli(capsys, "verify", artifact_copy, "--require-signature", other)
    assert code == 2 and "it was signed with another key" in err
    labels = artifact_copy / "labels.txt"
    labels.write_text(labels.read_text().replace("tabby", "tabbz"))  # same size: only a signature sees it
    code, err = run_cli(capsys, "predict", artifact_copy, demo_image(), "--require-signature", public)
    assert code == 2 and "labels.txt changed since signing" in err


def _key_pair(private: Path, public: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))


# --- interruptions, rivals, a full disk ---------------------------------------------------------------


def _start_export(out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([*EDGEKIT, "export", MODEL, "--target", "onnx", "--weights", "imagenet", "--out", str(out),
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _wait_for_conversion(out: Path, process: subprocess.Popen, timeout: float = 120.0, freeze: bool = False) -> None:
    """Waits until a converter child is running the onnxsim step: its request file exists, and a child forked by the
    step server writes to its step's log (it has left the server's hands: own session, death signal, log). With
    `freeze` that child is stopped (SIGSTOP), so that the export cannot finish before the test acts on it: onnxsim
    takes 0.3 s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        steps = [pid for pid in _workers(out) if _parent(pid) != process.pid and _writes_a_step_log(pid)]
        if list(out.glob(".*.partial/.model.onnx.request.json")) and steps:
            for pid in steps if freeze else ():
                os.kill(pid, signal.SIGSTOP)
            return
        if process.poll() is not None:
            pytest.fail(f"the export ended (rc {process.returncode}) before its conversion started: "
                        f"{process.stderr.read()}")
        time.sleep(0.01)
    pytest.fail("the conversion step never started")


def _workers(out: Path) -> dict[int, str]:
    """The step server of the export into `out` and the steps it forked (their command line is the server's)."""
    found = {}
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "edgekit.pipeline.forkserver" in cmdline and str(out) in cmdline:
            found[int(proc.name)] = cmdline
    return found


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return -1


def _writes_a_step_log(pid: int) -> bool:
    try:
        target = os.readlink(f"/proc/{pid}/fd/1")
    except OSError:
        return False
    return target.endswith(".log") and not target.endswith("step-server.log")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_export_removes_its_work_and_keeps_the_old_artifact(onnx_artifact, tmp_path, sig) -> None:
    out = tmp_path / "out"
    out.mkdir()
    existing = out / onnx_artifact.name
    shutil.copytree(onnx_artifact, existing)
    before = tree_digest(existing)
    process = _start_export(out, "--force")
    _wait_for_conversion(out, process, freeze=True)
    os.kill(process.pid, sig)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + sig
    assert f"interrupted ({sig.name}); unfinished work was removed" in err
    assert leftovers(out) == []
    assert tree_digest(existing) == before
    time.sleep(0.5)
    assert _workers(out) == {}


@pytest.mark.slow
def test_killed_export_leaves_a_stale_folder_that_the_next_export_removes(capsys, tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    process = _start_export(out)
    _wait_for_conversion(out, process, freeze=True)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)
    assert any(name.endswith(".partial") for name in leftovers(out))
    deadline = time.monotonic() + 10
    while _workers(out) and time.monotonic() < deadline:  # the converter dies with its parent
        time.sleep(0.1)
    assert _workers(out) == {}
    code, _ = run_cli(capsys, "export", MODEL, "--target", "onnx", "--weights", "imagenet", "--out", out)
    assert code == 0
    assert leftovers(out) == [] and (out / f"{MODEL}-onnx" / "model.onnx").is_file()


def test_work_folder_of_a_live_export_is_never_touched(capsys, tmp_path) -> None:
    from edgekit.pipeline.staging import claim

    out = tmp_path / "out"
    out.mkdir()
    held = claim(out / f".{MODEL}-onnx.partial")  # owned by this live process
    code, err = run_cli(capsys, "export", MODEL, "--target", "onnx", "--out", out)
    assert code == 1
    assert f"another export of {MODEL}-onnx is running (pid {os.getpid()}" in err
    assert held.is_dir() and (held / "owner.json").is_file()
    assert not (out / f"{MODEL}-onnx").exists()


@pytest.mark.slow
def test_two_concurrent_exports_one_wins_and_it_verifies(tmp_path) -> None:
    import edgekit

    out = tmp_path / "out"
    out.mkdir()
    first = _start_export(out)
    _wait_for_conversion(out, first)
    os.kill(first.pid, signal.SIGSTOP)  # the first holds its claim while the second starts, however fast its steps
    try:
        second = _start_export(out)
        _, err_second = second.communicate(timeout=120)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    _, err_first = first.communicate(timeout=300)
    assert (first.returncode, second.returncode) == (0, 1), err_first + err_second
    assert f"another export of {MODEL}-onnx is running" in err_second
    assert leftovers(out) == []
    assert edgekit.verify(out / f"{MODEL}-onnx").passed


@pytest.mark.slow
def test_full_disk_is_named_and_leaves_nothing(tmp_path) -> None:
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"]).returncode != 0:
        pytest.skip("unshare -rm (a private mount namespace for a small tmpfs) is not permitted here")
    disk = tmp_path / "small-disk"
    disk.mkdir()
    script = (f"mount -t tmpfs -o size=6m tmpfs {disk} && cd {tmp_path} && "
              f"{sys.executable} -m edgekit.cli export {MODEL} --target onnx --out {disk}/out; "
              f"echo rc=$?; ls -A {disk}/out")
    result = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=300)
    assert "rc=1\n" in result.stdout, result.stdout + result.stderr
    assert f"edgekit: error: no space left on the device holding {disk}/out" in result.stderr
    assert "MB free" in result.stderr
    left = result.stdout.split("rc=1\n", 1)[1].split()
    assert all(name.endswith(".export-failed.log") for name in left), left
