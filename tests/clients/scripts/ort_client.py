"""A plain ONNX Runtime client that reads everything from the ONNX file's metadata_props.

    python ort_client.py MODEL.onnx IMAGE... > results.json
"""

from __future__ import annotations

import json
import sys

import _contract

_contract.no_edgekit()

import numpy as np  # noqa: E402
import onnxruntime  # noqa: E402


def main(model: str, images: list[str]) -> list[dict]:
    session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    names = json.loads(meta["classes"])
    size = json.loads(meta["input_shape"])[-1]
    contract = {"resize_size": int(meta["resize_size"]), "input_size": size, "interpolation": meta["interpolation"],
                "mean": json.loads(meta["mean"]), "std": json.loads(meta["std"])}
    assert meta["layout"] == "NCHW" and meta["channel_order"] == "RGB" and meta["output_kind"] == "logits"
    results = []
    for path in images:
        feed = _contract.normalized(path, contract).transpose(2, 0, 1)[None]
        logits = session.run([meta["output_name"]], {meta["input_name"]: np.ascontiguousarray(feed)})[0][0]
        results.append({"image": path, **_contract.top1(logits, names)})
    return results


if __name__ == "__main__":
    json.dump(main(sys.argv[1], sys.argv[2:]), sys.stdout)
