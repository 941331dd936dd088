"""glibc malloc settings that keep freed memory for reuse instead of handing it back to the kernel at once.

By default glibc maps every block above a threshold (128 KB, raised up to 32 MB as blocks are freed) on its own
and hands it back to the kernel when freed, and trims the heap's free top; the next tensor of that size faults its
pages in again, zero-filled, 4 KB at a time. Exports allocate and free such tensors all the time (a batch of probes
through a convolution). Measured on an AVX2 Zen 3, 2 cores (2026-12-07), `python scripts/kept_memory.py
effnet_lite2 --batch 16 --passes 8 --threads 2 --how none|mallopt`, alternated three times: 14.8-17.6 s, 13.1-17.1 s
of it in the kernel (3.5-4.4 million page faults), against 6.3-7.9 s with these settings (no fault; peak 1.15-1.16
against 1.08-1.19 GB). The numbers computed do not change (PyTorch, ONNX Runtime and TensorFlow align their buffers
themselves; B0's verification init rebuilt with them is the same file).

The CLI applies them to its own process (`keep_freed_memory`) and the step server's environment carries them to
every step (`allocator_env`). A user who sets any `MALLOC_*` variable keeps exactly theirs; elsewhere than glibc
(musl, macOS) nothing changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

MIB = 1 << 20
# mallopt's parameters and the environment variables glibc reads for the same settings at start-up.
SETTINGS = {  # name: (mallopt parameter, value)
    "MALLOC_MMAP_MAX_": (-4, 0),  # no block is mapped on its own: every one comes from the heap and goes back to it
    "MALLOC_TRIM_THRESHOLD_": (-1, 1024 * MIB),  # the heap's free top is kept up to 1 GB
    "MALLOC_TOP_PAD_": (-2, 256 * MIB),  # and grows 256 MB at a time (address space; pages count once touched)
}


def _user_set(environ: dict[str, str] | os._Environ) -> bool:
    return any(name.startswith("MALLOC_") for name in environ)


def allocator_env(environ: dict[str, str]) -> dict[str, str]:
    """`environ` with `SETTINGS` added for a child process, unless the user set any `MALLOC_*` variable."""
    if _user_set(environ):
        return dict(environ)
    return {**environ, **{name: str(value) for name, (_, value) in SETTINGS.items()}}


def keep_freed_memory() -> bool:
    """Applies `SETTINGS` to this process through glibc's `mallopt`; False where not glibc or the user set `MALLOC_*`."""
    if _user_set(os.environ) or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    return all(libc.mallopt(parameter, value) == 1 for parameter, value in SETTINGS.values())
