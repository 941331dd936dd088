"""An OpenCV DNN client (cv2.dnn.readNetFromONNX) fed by the manifest's contract.

    python opencv_client.py ARTIFACT_DIR [--resize pil|area|linear] IMAGE... > results.json

`pil` (the default) resizes as the contract means it, with Pillow; `area` and `linear` use
cv2.imread and cv2.resize (INTER_AREA, INTER_LINEAR) instead, to measure what they change.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import _contract

_contract.no_edgekit()

import cv2  # noqa: E402
import numpy as np  # noqa: E402


def cv2_normalized(path: str, contract: dict, interpolation: int) -> np.ndarray:
    """HWC float32 normalised, resized and cropped by OpenCV alone."""
    image = cv2.cvtColor(cv2.imread(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    height, width = image.shape[:2]
    resize, crop = contract["resize_size"], contract["input_size"]
    new_long = int(resize * max(width, height) / min(width, height))
    size = (resize, new_long) if width <= height else (new_long, resize)
    image = cv2.resize(image, size, interpolation=interpolation)
    left, top = int(round((size[0] - crop) / 2.0)), int(round((size[1] - crop) / 2.0))
    image = image[top:top + crop, left:left + crop].astype(np.float32) / 255
    return (image - np.asarray(contract["mean"], np.float32)) / np.asarray(contract["std"], np.float32)


def main(directory: str, images: list[str], resize: str = "pil") -> list[dict]:
    manifest = _contract.manifest(directory)
    contract, names = manifest["contract"], _contract.labels(directory)
    assert contract["layout"] == "NCHW" and contract["normalization"] == "caller"
    net = cv2.dnn.readNetFromONNX(str(Path(directory) / manifest["artifact"]["file"]))
    opencv = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR}
    results = []
    for path in images:
        image = cv2_normalized(path, contract, opencv[resize]) if resize in opencv else _contract.normalized(path, contract)
        blob = np.ascontiguousarray(image.transpose(2, 0, 1)[None])
        net.setInput(blob)
        logits = net.forward().reshape(-1)
        results.append({"image": path, **_contract.top1(logits, names)})
    return results


if __name__ == "__main__":
    args = sys.argv[2:]
    mode = args[1] if args[:1] == ["--resize"] else "pil"
    json.dump(main(sys.argv[1], args[2:] if args[:1] == ["--resize"] else args, mode), sys.stdout)
