"""CPU time per inference of exported artifacts, one thread, alternating: `python scripts/cpu_time.py DIR [DIR ...]`.

Prints each artifact's median process CPU time per batch-1 inference over RUNS alternating runs,
and its ratio to the first. CPU time, unlike wall time, barely moves when other processes share the
cores, so ratios taken on a busy machine hold; `edgekit bench` (wall time, idle machine) is the
figure of record. Set RUNS (default 40).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

from edgekit.manifest import manifest_contract, read_manifest
from edgekit.runners import runner_for


def main(directories: list[str]) -> int:
    runs = int(os.environ.get("RUNS", "40"))
    runners = []
    for directory in map(Path, directories):
        manifest = read_manifest(directory)
        runners.append(runner_for(directory / manifest["artifact"]["file"], manifest_contract(manifest), threads=1))
    times: list[list[float]] = [[] for _ in runners]
    for runner in runners:
        runner.__enter__()
    try:
        size = runners[0].contract.input_size
        image = np.random.default_rng(0).standard_normal((1, 3, size, size), dtype=np.float32)
        for runner in runners:
            for _ in range(5):
                runner.infer(image)
        for _ in range(runs):
            for index, runner in enumerate(runners):
                started = time.process_time()
                runner.infer(image)
                times[index].append((time.process_time() - started) * 1000)
    finally:
        for runner in runners:
            runner.__exit__(None, None, None)
    first = float(np.median(times[0]))
    for directory, values in zip(directories, times):
        median = float(np.median(values))
        print(f"{directory}: {median:.2f} ms CPU per inference, x{median / first:.2f} the first")
    print(f"load average {os.getloadavg()[0]:.1f}, {runs} runs each")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
