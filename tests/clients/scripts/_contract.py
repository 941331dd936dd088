"""Client-side preprocessing, written from the manifest's contract (or the ONNX metadata) alone.

Part of the third-party client scripts: it imports numpy and Pillow, never edgekit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

RESAMPLING = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
              "bicubic": Image.Resampling.BICUBIC}


def no_edgekit() -> None:
    """Makes `import edgekit` fail in this process, so nothing of it can be used by accident."""
    sys.modules["edgekit"] = None


def manifest(directory: str | Path) -> dict:
    return json.loads((Path(directory) / "manifest.json").read_text())


def labels(directory: str | Path) -> list[str]:
    """Class names in output order, from the labels file the manifest names."""
    data = manifest(directory)
    return (Path(directory) / data["labels"]).read_text(encoding="utf-8").splitlines()


def crop(path: str | Path, resize_size: int, input_size: int, interpolation: str) -> Image.Image:
    """RGB, shorter side resized to `resize_size` (PIL, antialiased), center crop `input_size`."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        width, height = image.size
        short, long = min(width, height), max(width, height)
        new_long = int(resize_size * long / short)
        size = (resize_size, new_long) if width <= height else (new_long, resize_size)
        image = image.resize(size, RESAMPLING[interpolation])
        left, top = int(round((size[0] - input_size) / 2.0)), int(round((size[1] - input_size) / 2.0))
        return image.crop((left, top, left + input_size, top + input_size))


def pixels(path: str | Path, contract: dict) -> np.ndarray:
    """HWC float32 RGB pixel values 0-255 after resize and crop."""
    image = crop(path, contract["resize_size"], contract["input_size"], contract["interpolation"])
    return np.asarray(image, dtype=np.float32)


def normalized(path: str | Path, contract: dict) -> np.ndarray:
    """HWC float32: pixels / 255, minus mean, divided by std."""
    mean, std = np.asarray(contract["mean"], np.float32), np.asarray(contract["std"], np.float32)
    return (pixels(path, contract) / np.float32(255) - mean) / std


def top1(row: np.ndarray, names: list[str]) -> dict:
    """The highest score (lowest index on a tie), its name, and every index tied with it."""
    best = int(np.argmax(row))
    return {"index": best, "name": names[best], "tied": [int(i) for i in np.flatnonzero(row == row[best])]}
