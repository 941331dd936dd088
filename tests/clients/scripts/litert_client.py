"""A plain ai_edge_litert client fed by the manifest's contract (layout, normalisation, integer I/O).

    python litert_client.py ARTIFACT_DIR IMAGE... > results.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import _contract

_contract.no_edgekit()

import numpy as np  # noqa: E402
from ai_edge_litert.interpreter import Interpreter  # noqa: E402


def feed_of(path: str, contract: dict) -> np.ndarray:
    """One image as the artifact's input tensor wants it, from the contract alone."""
    if contract["normalization"] == "graph":
        image = _contract.pixels(path, contract)  # the graph applies mean/std itself
    else:
        image = _contract.normalized(path, contract)
    if contract["layout"] == "NCHW":
        image = image.transpose(2, 0, 1)
    quant = contract.get("input_quant")
    if quant:
        info = np.iinfo(quant["dtype"])
        image = np.clip(np.round(image / quant["scale"]) + quant["zero_point"], info.min, info.max).astype(quant["dtype"])
    return np.ascontiguousarray(image[None], dtype=contract["input_dtype"])


def main(directory: str, images: list[str]) -> list[dict]:
    manifest = _contract.manifest(directory)
    contract, names = manifest["contract"], _contract.labels(directory)
    interpreter = Interpreter(model_path=str(Path(directory) / manifest["artifact"]["file"]))
    interpreter.allocate_tensors()
    given, taken = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    quant = contract.get("output_quant")
    results = []
    for path in images:
        interpreter.set_tensor(given["index"], feed_of(path, contract))
        interpreter.invoke()
        out = interpreter.get_tensor(taken["index"])[0]
        logits = (out.astype(np.float32) - quant["zero_point"]) * quant["scale"] if quant else out
        results.append({"image": path, **_contract.top1(logits, names)})
    return results


if __name__ == "__main__":
    json.dump(main(sys.argv[1], sys.argv[2:]), sys.stdout)
