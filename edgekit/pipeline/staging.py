"""Work folders that never outlive their export: claimed by one live process, removed on any exit.

An export builds each artifact in a hidden `.NAME.partial` folder beside its final place. The
folder's name is fixed per artifact, and `mkdir` is atomic, so the folder is also the lock: a
second export of the same artifact finds it and says so. Inside, `owner.json` records the pid,
the process start time and the host, so a folder left by an export that was killed (SIGKILL,
power loss) is recognised as stale and removed by the next export, while one owned by a live
export is never touched.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edgekit.errors import ExportBusyError, ExportError, InvalidSpecError

OWNER = "owner.json"
PARTIAL = ".partial"
# A folder without an owner file younger than this may be one being created this instant.
UNOWNED_GRACE_S = 60.0


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; raised in the main thread so that cleanup runs, then exit 128 + signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def process_start(pid: int) -> str | None:
    """The start time of a process in clock ticks since boot (field 22 of /proc/PID/stat), or None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _owner() -> dict:
    return {"pid": os.getpid(), "start": process_start(os.getpid()), "host": socket.gethostname(),
            "created": time.time()}


def owner_alive(folder: Path) -> bool | None:
    """Whether the export that owns `folder` still runs: True, False, or None when that cannot be told here."""
    try:
        owner = json.loads((folder / OWNER).read_text())
    except (OSError, ValueError):
        try:
            young = time.time() - folder.stat().st_mtime < UNOWNED_GRACE_S
        except OSError:
            return False
        return True if young else False
    if owner.get("host") != socket.gethostname():
        return None
    started = process_start(int(owner["pid"]))
    return started is not None and started == owner.get("start")


def claim(folder: Path) -> Path:
    """Creates `folder` as this process's work folder; removes a stale one first.

    Raises:
        ExportBusyError: a live export (here or on another host sharing the folder) owns it.
    """
    for _ in range(3):
        try:
            folder.mkdir()
        except FileExistsError:
            alive = owner_alive(folder)
            if alive is False:
                shutil.rmtree(folder, ignore_errors=True)
                continue
            raise ExportBusyError(_busy_message(folder, alive)) from None
        (folder / OWNER).write_text(json.dumps(_owner()))
        return folder
    raise ExportBusyError(f"could not claim {folder}: it keeps reappearing; is another export running?")


def _busy_message(folder: Path, alive: bool | None) -> str:
    try:
        owner = json.loads((folder / OWNER).read_text())
        who = f"pid {owner['pid']} on {owner['host']}"
    except (OSError, ValueError, KeyError):
        who = "a process that is still creating it"
    name = folder.name.removeprefix(".").removesuffix(PARTIAL)
    if alive is None:
        return (f"{folder} belongs to an export by {who}, on another host; edgekit cannot tell whether it still "
                f"runs. Wait for it, or delete that folder if you know it has stopped")
    return f"another export of {name} is running ({who}); wait for it to finish, or export to another --out"


def sweep_stale(out: Path) -> list[Path]:
    """Removes the `.partial` work folders in `out` whose owner is dead; returns them."""
    removed = []
    try:
        folders = [p for p in out.iterdir() if p.name.startswith(".") and p.name.endswith(PARTIAL) and p.is_dir()]
    except OSError:
        return removed
    for folder in folders:
        if owner_alive(folder) is False:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def prepare_out(out: Path) -> Path:
    """Creates the output folder, with an error naming the path when it cannot exist as a folder."""
    out = Path(out).absolute()
    blocker = next((p for p in (out, *out.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise InvalidSpecError(f"--out {out}: {blocker} is a file, not a folder; choose another output folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except PermissionError as exc:
        raise InvalidSpecError(f"--out {out}: permission denied creating it ({exc.strerror}); choose a folder you "
                               "can write to") from exc
    except OSError as exc:
        raise disk_error(exc, out) if exc.errno == errno.ENOSPC else InvalidSpecError(
            f"--out {out}: cannot create it: {exc.strerror}") from exc
    if not os.access(out, os.W_OK | os.X_OK):
        raise InvalidSpecError(f"--out {out}: the folder is not writable; choose a folder you can write to")
    return out


def disk_error(exc: OSError | None, path: Path, needed_mb: float | None = None) -> ExportError:
    """The error for a full disk: the path, the free space, and what the export needs where known."""
    free = shutil.disk_usage(path if path.exists() else path.parent).free / 1e6
    need = f"; this export needs about {needed_mb:.0f} MB" if needed_mb else ""
    error = ExportError(f"no space left on the device holding {path} ({free:.0f} MB free{need}). Free some space "
                        "or export to another --out; nothing was left at the output path")
    error.__cause__ = exc
    return error


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


@contextmanager
def interruptible() -> Iterator[None]:
    """Turns SIGINT and SIGTERM into `Interrupted` in the main thread, so `finally` blocks clean up.

    Outside the main thread signal handlers cannot be set; there this does nothing.
    """
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def remove(folder: Path) -> None:
    """Removes a work folder, shielded from a second Ctrl-C while it does."""
    with _signals_held():
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def _signals_held() -> Iterator[None]:
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {sig: signal.signal(sig, lambda s, f: pending.append(s)) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        if pending:
            raise Interrupted(pending[0])
