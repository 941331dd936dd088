"""A fork server for export steps: heavy libraries are imported once per export, not once per step.

Every step used to start a fresh interpreter and import its libraries again: torch costs 1.9 s of
CPU, TensorFlow 5 s, ExecuTorch's `exir` 6 s, so an export of fifteen targets spent about a third
of its CPU time importing. The server (`python -m edgekit.pipeline.forkserver HOME EXPORT_PID`) is
started by the executor with the steps' environment. Before it forks a step it imports the step's exporter
module and what that module lists in `PRELOAD`; the forked child then is what a fresh step process
was: a session of its own (the parent stops it, and whatever it started, by its process group), its
output in the step's log, its working folder the output's, killed when the server dies, which is
killed when the export dies. Nothing runs in the server but imports, so no thread pool of torch,
TensorFlow or ONNX Runtime exists when it forks: a warm-up that built XNNPACK's pattern graphs in the
server (2-4 s of every ExecuTorch step's first lowering) started PyTorch's OpenMP pool, and the forked
child then hung on a futex in its first parallel region. A step whose module sets `FRESH_PROCESS` (TensorRT,
which needs CUDA) replaces its forked child with a fresh interpreter, as every step had before.

Protocol: the parent writes one JSON line per step to the server's stdin; the server answers
`{"key", "pid"}` once the child has its own session, and `{"pid", "code"}` when it ends (`code` as
`subprocess` gives it: negative for a signal). The server exits when its stdin closes.
"""

from __future__ import annotations

import importlib
import json
import os
import select
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

from edgekit.errors import ExportError

BASE_PRELOAD = ("edgekit.pipeline.worker", "edgekit.models", "edgekit.parity", "edgekit.runners")
REPLY_TIMEOUT_S = 900.0
LOG_TAIL_LINES = 25


class ForkServer:
    """The parent's handle on a running server."""

    def __init__(self, home: Path, env: dict[str, str], log: Path) -> None:
        self.log = log
        with open(log, "ab") as sink:
            self.process = subprocess.Popen([sys.executable, "-m", "edgekit.pipeline.forkserver", str(home),
                                             str(os.getpid())], cwd=home,
                                            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=sink,
                                            start_new_session=True)
        self.codes: dict[int, int] = {}
        self.started: dict[str, int] = {}
        self.buffer = b""
        self.closed = False

    @property
    def alive(self) -> bool:
        return not self.closed and self.process.poll() is None

    def fork(self, key: str, request: Path, log: Path, cwd: Path, exporter: str) -> Child:
        """Asks for a child that runs the step `request`; returns once it runs in a session of its own."""
        line = json.dumps({"key": key, "request": str(request), "log": str(log), "cwd": str(cwd), "exporter": exporter})
        try:
            self.process.stdin.write(line.encode() + b"\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            self.closed = True
        deadline = time.monotonic() + REPLY_TIMEOUT_S
        while key not in self.started and not self.closed and time.monotonic() < deadline:
            self._read(0.1)
        if key not in self.started:  # its log lies in the work folder, which the export removes: quote it
            raise ExportError(f"the step server stopped before it started {exporter}. Last lines of its log:\n"
                              + tail(self.log))
        return Child(self, self.started.pop(key))

    def returncode(self, pid: int) -> int | None:
        """The exit code of child `pid` once it has ended; a child of a server that died was killed with it."""
        self._read(0)
        if pid not in self.codes and self.closed:
            return -signal.SIGKILL
        return self.codes.get(pid)

    def lost(self, pid: int) -> str | None:
        """Why child `pid` has no exit code of its own: the server died while it ran (None if it did not)."""
        self._read(0)
        if pid in self.codes or not self.closed:
            return None
        try:
            code = self.process.wait(2)  # its output closes just before it ends
        except subprocess.TimeoutExpired:
            code = None
        how = "closed its output" if code is None else ended(code)
        return (f"the step server (pid {self.process.pid}) {how} while the step ran, and the step died with it. "
                "Last lines of the server's log:\n" + tail(self.log, 10))

    def close(self) -> None:
        """Ends the server; any child still running dies with it."""
        if self.process.stdin and not self.process.stdin.closed:
            try:
                self.process.stdin.close()
            except BrokenPipeError:
                pass
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.closed = True

    def _read(self, timeout: float) -> None:
        stream = self.process.stdout
        if self.closed or not select.select([stream], [], [], timeout)[0]:
            return
        chunk = os.read(stream.fileno(), 1 << 16)
        if not chunk:
            self.closed = True
            return
        self.buffer += chunk
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            message = json.loads(line)
            if "key" in message:
                self.started[message["key"]] = message["pid"]
            else:
                self.codes[message["pid"]] = message["code"]


def ended(code: int) -> str:
    """How a process ended, from its exit code as `subprocess` gives it (negative for a signal)."""
    return f"exited with code {code}" if code >= 0 else f"was killed by signal {-code}"


def tail(log: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a log file, indented."""
    text = log.read_text(errors="replace").splitlines() if log.is_file() else []
    return "\n".join("    " + line for line in text[-lines:])


class Child:
    """A forked step, with the part of `subprocess.Popen`'s interface that the executor uses."""

    def __init__(self, server: ForkServer, pid: int) -> None:
        self.server = server
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.server.returncode(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"step {self.pid}", timeout)
            time.sleep(0.02)
        return self.returncode


# --- the server side ------------------------------------------------------------------------------


def serve(parent: int) -> int:
    """Reads step requests from stdin and forks a child for each until stdin closes. Dies with `parent`, the export,
    even one killed before this process asked to die with it."""
    from edgekit.pipeline.worker import _die_with_parent

    _die_with_parent(parent)
    for name in BASE_PRELOAD:  # while the export computes its reference
        _import(name)
    children: set[int] = set()
    pending = b""
    while True:
        if select.select([0], [], [], 0.05)[0]:
            chunk = os.read(0, 1 << 16)
            if not chunk:
                break
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                job = json.loads(line)
                job["fresh"] = _preload(job["exporter"])
                pid = _fork(job)
                children.add(pid)
                _reply({"key": job["key"], "pid": pid})
        _reap(children)
    for pid in children:
        _kill_group(pid)
    return 0


def _preload(exporter: str) -> bool:
    """Imports what the step will import: its exporter's module and what that lists in `PRELOAD`.

    Returns True for a step that must start a fresh interpreter instead (`FRESH_PROCESS` in its module:
    CUDA cannot be used in a process forked from one that initialised it, and a library imported here might).
    """
    module = f"edgekit.exporters.{exporter.split(':')[0]}"
    _import(module)
    if getattr(sys.modules.get(module), "FRESH_PROCESS", False):
        return True
    for name in getattr(sys.modules.get(module), "PRELOAD", ()):
        _import(name)
    return False


def _import(name: str) -> None:
    """A failure is left for the step to meet again and report in its own log."""
    if name not in sys.modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - the step imports it again and fails there with the real error
            traceback.print_exc()


def _fork(job: dict) -> int:
    server = os.getpid()
    ready, signal_ready = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ready)
        try:
            os.setsid()
            os.close(signal_ready)
            _child(job, server)
        finally:
            os._exit(1)
    os.close(signal_ready)
    os.read(ready, 1)  # end of file once the child has its own session (or has died)
    os.close(ready)
    return pid


def _child(job: dict, server: int) -> None:
    from edgekit.pipeline.worker import _die_with_parent, execute

    _die_with_parent(server)
    log = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.chdir(job["cwd"])
    if job["fresh"]:  # same pid, session, log and death signal, in a new interpreter
        os.execv(sys.executable, [sys.executable, "-m", "edgekit.pipeline.worker", job["request"]])
    code = 1
    try:
        code = execute(Path(job["request"]))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - a fresh interpreter would print it and exit 1
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)


def _reap(children: set[int]) -> None:
    for pid in list(children):
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            children.discard(pid)
            continue
        if done:
            children.discard(pid)
            _reply({"pid": pid, "code": os.waitstatus_to_exitcode(status)})


def _reply(message: dict) -> None:
    data = json.dumps(message).encode() + b"\n"
    while data:
        data = data[os.write(1, data):]


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


if __name__ == "__main__":
    sys.exit(serve(int(sys.argv[2])))
