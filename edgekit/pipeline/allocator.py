"""glibc malloc settings that keep freed memory for reuse instead of handing it back to the kernel at once.

By default glibc returns a freed block of more than a few MB to the kernel (munmap, or trimming the heap's top),
and the next tensor of that size faults its pages in again, zero-filled, one 4 KB page at a time. Exports allocate
and free such tensors all the time (a batch of probes through a convolution). Measured on an AVX2 Zen 3, 2 cores
(2026-12-07): eight passes of effnet_lite2 over 16 images in PyTorch on 2 threads took 18.2-19.9 s, 17.5-19.5 s of
it in the kernel (4.5 million page faults), and 7.8-8.7 s with these settings (1.7-1.9 s, 0.46 million);
`edgekit export effnet_lite2 --target onnx --weights imagenet --data imagenet-sample/` spent 16-50 s in the kernel
(3.5-13.7 million faults) and 6-13 s with them, peak 2.03 -> 2.17-2.19 GB. The numbers computed do not change
(PyTorch, ONNX Runtime and TensorFlow align their buffers themselves; B0's verification init rebuilt with them is
the same file).

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
    "MALLOC_MMAP_THRESHOLD_": (-3, 32 * MIB),  # blocks up to 32 MB come from the heap, glibc's largest fixed value
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
