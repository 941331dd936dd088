"""Time and page faults of PyTorch forward passes, with or without edgekit's kept-memory allocator settings.

`python scripts/kept_memory.py effnet_lite2 --batch 16 --passes 8 --threads 2 --how mallopt` prints one JSON line:
wall, user and kernel seconds and minor page faults of `--passes` passes after `--warm` passes. `--how none` leaves
glibc alone (or as the environment's `MALLOC_*` set it); `mallopt` calls `edgekit.pipeline.allocator.
keep_freed_memory` first, as the `edgekit` command does. Run each in turn: one process per measurement.
"""

from __future__ import annotations

import argparse
import json
import resource
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--passes", type=int, default=6)
    parser.add_argument("--warm", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--how", choices=("none", "mallopt"), default="none")
    args = parser.parse_args()

    import torch

    from edgekit.models import create_model, get_card
    from edgekit.pipeline.allocator import keep_freed_memory

    torch.set_num_threads(args.threads)
    applied = keep_freed_memory() if args.how == "mallopt" else None
    size = get_card(args.model).input_size
    net, batch = create_model(args.model).eval(), torch.randn(args.batch, 3, size, size)
    with torch.no_grad():
        for _ in range(args.warm):
            net(batch)
        before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        for _ in range(args.passes):
            net(batch)
        wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"how": args.how, "applied": applied, "wall_s": round(wall, 2),
                      "user_s": round(after.ru_utime - before.ru_utime, 2),
                      "kernel_s": round(after.ru_stime - before.ru_stime, 2),
                      "page_faults": after.ru_minflt - before.ru_minflt, "peak_mb": round(after.ru_maxrss / 1024)}))


if __name__ == "__main__":
    main()
