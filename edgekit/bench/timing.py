"""Measures one runner in a process of its own: `python -m edgekit.bench.timing REQUEST.json`.

Each runtime gets a fresh process, so its peak resident memory is its own, and every runtime
runs with the same thread count.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from edgekit.pipeline.worker import peak_rss_mb
from edgekit.contract import Contract

THROUGHPUT_BATCH = 8


def measure(artifact: str, contract: Contract, runs: int, warmup: int, threads: int, model: dict | None = None,
            throughput: bool = True) -> dict:
    """Single-image latencies (each run's, with their median and p90), batch-8 throughput where the artifact allows
    and `throughput` asks, peak memory."""
    import torch

    torch.set_num_threads(threads)
    if model is not None:
        from edgekit.models import create_model
        from edgekit.runners.torch_runner import TorchRunner

        runner = TorchRunner(create_model(model["name"], weights=model["weights"], num_classes=model["num_classes"]),
                             contract, threads=threads)
    else:
        from edgekit.runners import runner_for

        runner = runner_for(artifact, contract, threads=threads)
    size = contract.input_size
    image = np.random.default_rng(0).standard_normal((1, 3, size, size), dtype=np.float32)
    with runner:
        for _ in range(warmup):
            runner.infer(image)
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            runner.infer(image)
            times.append((time.perf_counter() - started) * 1000)
        images_per_second = None
        if throughput and contract.batch is None:
            batch = np.repeat(image, THROUGHPUT_BATCH, axis=0)
            runner.infer(batch)
            started = time.perf_counter()
            repeats = max(3, runs // THROUGHPUT_BATCH)
            for _ in range(repeats):
                runner.infer(batch)
            images_per_second = THROUGHPUT_BATCH * repeats / (time.perf_counter() - started)
    return {"median_ms": float(np.median(times)), "p90_ms": float(np.percentile(times, 90)), "times_ms": times,
            "throughput_batch8": images_per_second, "peak_rss_mb": peak_rss_mb(), "runs": runs, "threads": threads}


def matmul_gflops(threads: int, size: int = 2048, repeats: int = 10) -> float:
    """This CPU's fp32 compute floor: GFLOP/s of a large single-precision matmul on `threads` threads."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9


def main() -> int:
    request = json.loads(Path(sys.argv[1]).read_text())
    if request.get("matmul"):
        result = {"gflops": matmul_gflops(request["threads"])}
    else:
        result = measure(request["artifact"], Contract.from_dict(request["contract"]), request["runs"],
                         request["warmup"], request["threads"], request.get("model"), request.get("throughput", True))
    Path(request["result"]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
