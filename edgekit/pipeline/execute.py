"""Runs export steps in child processes, several side by side, each with a time limit and a log.

The children are forked by one step server per export (see `forkserver`), which imports each
library once. A child runs in a session of its own, so a Ctrl-C at the terminal reaches only the
parent, which stops every child (and whatever the child started) before it removes the work folder.
A child dies with the server and the server with the export, even one killed by SIGKILL (see
`worker._die_with_parent`).

Children side by side share the cores: each gets `cpu_count // slots` threads for its OpenMP,
MKL and OpenBLAS pools (`thread_env`), unless the user set them. With every runtime's default of
one thread per core, two children ran four OpenMP threads on two cores, whose spin-waiting made
a 0.7-second torch step take 5.5 seconds (effnet_b0, nine targets: 72.6-86.8 s before, 47.2 s after).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edgekit.errors import EdgekitError, ExportError
from edgekit.pipeline.allocator import allocator_env
from edgekit.pipeline.forkserver import Child, ForkServer, ended, tail
from edgekit.pipeline.spec import ExportSpec
from edgekit.pipeline.staging import disk_error

HEARTBEAT_S = 30.0
STOP_GRACE_S = 3.0
DISK_FULL_MARKERS = ("No space left on device", "[Errno 28]", "ENOSPC", "Disk quota exceeded")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def thread_env(slots: int, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a child that shares the CPU with `slots - 1` others: its share of the cores as
    every thread pool's size, unless the user set any of them (PyTorch takes the smallest it is given)."""
    env = dict(os.environ if environ is None else environ)
    if not any(name in env for name in THREAD_VARIABLES):
        env.update(dict.fromkeys(THREAD_VARIABLES, str(max(1, (os.cpu_count() or 1) // max(1, slots)))))
    return env


@dataclass
class Job:
    """One step to run: `exporter` reads `source` ("model" or a file) and writes `output`; `verify` asks for parity."""

    key: str
    exporter: str
    source: str | Path
    output: Path
    spec: ExportSpec
    log: Path
    verify: dict | None = None
    name: str = ""


@dataclass
class Done:
    """A finished job: the exporter's report, or the error that stopped it."""

    job: Job
    report: dict | None = None
    error: EdgekitError | None = None


@dataclass
class _Running:
    job: Job
    process: Child
    request: Path
    result: Path
    started: float
    heartbeat: float = field(default=0.0)


class Executor:
    """Starts jobs in child processes, at most `slots` at once, and reports each as it finishes."""

    def __init__(self, slots: int = 1, say: Callable[[str], None] | None = None) -> None:
        self.slots = max(1, slots)
        self.say = say or (lambda text: None)
        self.running: dict[str, _Running] = {}
        self.server: ForkServer | None = None

    @property
    def free(self) -> int:
        return self.slots - len(self.running)

    def warm(self, home: Path, log: Path) -> None:
        """Starts the step server, which imports what every step needs while the caller prepares the first."""
        env = dict(allocator_env(thread_env(self.slots)), PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2")
        self.server = ForkServer(home, env, log)

    def start(self, job: Job) -> None:
        """Has the step server fork a child that runs `job`, working in its output's folder."""
        folder = job.output.parent
        request = folder / f".{job.output.name}.request.json"
        result = folder / f".{job.output.name}.result.json"
        request.write_text(json.dumps({"exporter": job.exporter, "input": str(job.source), "output": str(job.output),
                                       "spec": job.spec.to_dict(), "result": str(result), "verify": job.verify}))
        if self.server is None or not self.server.alive:
            self.warm(folder, job.log.with_name("step-server.log"))
        process = self.server.fork(job.key, request, job.log, folder, job.exporter)
        now = time.monotonic()
        self.running[job.key] = _Running(job, process, request, result, now, now)

    def wait(self) -> list[Done]:
        """Blocks until at least one running job finishes or runs out of time; returns those."""
        while self.running:
            finished = [self._collect(run) for run in list(self.running.values()) if self._over(run)]
            if finished:
                return finished
            self._heartbeats()
            time.sleep(0.05)
        return []

    def stop_all(self) -> None:
        """Stops every running child and all it started: SIGTERM, then SIGKILL after a grace period."""
        for run in self.running.values():
            _signal_group(run.process, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for run in self.running.values():
            try:
                run.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _signal_group(run.process, signal.SIGKILL)
            try:
                run.process.wait(STOP_GRACE_S)  # killed; only a stuck server would not report it
            except subprocess.TimeoutExpired:
                pass
        self.running.clear()
        if self.server is not None:
            self.server.close()

    def _over(self, run: _Running) -> bool:
        return run.process.poll() is not None or time.monotonic() - run.started > run.job.spec.timeout

    def _collect(self, run: _Running) -> Done:
        del self.running[run.job.key]
        job = run.job
        if run.process.poll() is None:
            _signal_group(run.process, signal.SIGKILL)
            run.process.wait()
            run.request.unlink(missing_ok=True)
            return Done(job, error=ExportError(f"{job.exporter} ran past its time limit of {job.spec.timeout:g} s "
                                               f"and was stopped (--timeout). Log: {job.log}"))
        _signal_group(run.process, signal.SIGKILL)  # anything the step left running
        run.request.unlink(missing_ok=True)
        code = run.process.returncode
        raised = _raised(run.result, job.log)
        if raised is not None:
            return Done(job, error=raised)
        if code != 0 or not run.result.is_file() or not job.output.exists():
            return Done(job, error=_failure(job, code, run.process.server.lost(run.process.pid)))
        report = json.loads(run.result.read_text())
        run.result.unlink()
        return Done(job, report=report)

    def _heartbeats(self) -> None:
        now = time.monotonic()
        for run in self.running.values():
            if now - run.heartbeat >= HEARTBEAT_S and now - run.started >= HEARTBEAT_S:
                run.heartbeat = now
                self.say(f"        ... {run.job.name or run.job.exporter} still running ({now - run.started:.0f}s)")


def _raised(result: Path, log: Path) -> EdgekitError | None:
    """The typed edgekit error a step stopped on (see `worker.execute`), naming the step's log, or None."""
    from edgekit import errors
    from edgekit.pipeline.worker import error_file

    path = error_file(result)
    if not path.is_file():
        return None
    raised = json.loads(path.read_text())
    path.unlink()
    kind = getattr(errors, raised["type"], None)
    if not (isinstance(kind, type) and issubclass(kind, EdgekitError)):
        kind = ExportError
    return kind(f"{raised['message']}\nThe step's log: {log}")


def _failure(job: Job, code: int, server_death: str | None = None) -> EdgekitError:
    log_tail = tail(job.log)
    if any(marker in log_tail for marker in DISK_FULL_MARKERS):
        error = disk_error(None, job.output.parent)
        error.args = (f"{error.args[0]}. The step '{job.name or job.exporter}' failed writing its output; log: "
                      f"{job.log}",)
        return error
    cause = f": {server_death}\n" if server_death else ". "
    return ExportError(f"{job.exporter} {ended(code)}{cause}Last lines of its log ({job.log}):\n{log_tail}")


def _signal_group(process: Child, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def run_step(exporter: str, source: str | Path, output: Path, spec: ExportSpec, log: Path) -> dict:
    """Runs one step to completion and returns the exporter's report.

    Raises:
        ExportError: the converter failed, crashed, filled the disk or ran past `spec.timeout`; names the log.
    """
    executor = Executor(1)
    try:
        executor.start(Job("step", exporter, source, output.absolute(), spec, log))
        done = executor.wait()[0]
    finally:
        executor.stop_all()
    if done.error is not None:
        raise done.error
    return done.report
