"""The input/output contract of an artifact: what a caller must feed it and what comes back."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgekit.card import ModelCard

LAYOUTS = ("NCHW", "NHWC")
DTYPES = ("float32", "float16", "int8", "uint8")
# Who applies mean/std: the caller (the artifact takes normalised values) or the artifact's own graph
# (it takes RGB pixel values 0-255 after resize and crop, as MediaPipe and the TFLite Task Library feed them).
NORMALIZATIONS = ("caller", "graph")
# A photo normalised and turned back into pixels lands this close to whole pixel values (measured: 1.5e-5).
PIXEL_GRID_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Quantization:
    """Affine quantization of a tensor: real = scale * (q - zero_point)."""

    scale: float
    zero_point: int
    dtype: str


@dataclass(frozen=True)
class Contract:
    """Preprocessing and tensor format an artifact expects, recorded in its manifest.

    `input_quant` / `output_quant` are set when the artifact's input or output tensor is
    integer; runners apply them, so callers always feed normalised float32 NCHW and read
    float32 logits. With `normalization` "graph" the artifact subtracts `mean` and divides by
    `std` itself and takes pixel values 0-255; runners undo the caller's normalisation for it
    (`pixels_of`). The output is raw logits (no softmax). `device` is set for artifacts tied to
    one device (TensorRT engines): the GPU, compute capability, CUDA and TensorRT versions they
    were built with.
    """

    input_size: int
    resize_size: int
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    layout: str = "NCHW"
    channel_order: str = "RGB"
    input_dtype: str = "float32"
    output_dtype: str = "float32"
    batch: int | None = 1
    input_quant: Quantization | None = None
    output_quant: Quantization | None = None
    device: dict[str, str] | None = None
    normalization: str = "caller"

    @classmethod
    def from_card(cls, card: ModelCard, **changes: Any) -> Contract:
        """The contract of a plain float32 NCHW artifact of `card`."""
        base = cls(card.input_size, card.resize_size, card.interpolation, tuple(card.mean), tuple(card.std))
        return dataclasses.replace(base, **changes)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Contract:
        """Reads a contract back from manifest JSON."""
        data = dict(data)
        for key in ("input_quant", "output_quant"):
            data[key] = Quantization(**data[key]) if data.get(key) else None
        for key in ("mean", "std"):
            data[key] = tuple(data[key])
        return cls(**data)

    def replace(self, **changes: Any) -> Contract:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def channel_order_of(self, batch):
        """An RGB NCHW batch in this contract's channel order."""
        return batch[:, ::-1].copy() if self.channel_order == "BGR" else batch

    def pixels_of(self, batch: np.ndarray) -> np.ndarray:
        """A normalised NCHW batch (in this contract's channel order) back to pixel values 0-255.

        A sample that came from a photo lands within float rounding (about 1e-5) of whole pixel values and is put
        back on them exactly, as a client feeds them: a dynamic-range TFLite model quantizes its activations from
        what it is fed, and those 1e-5 moved mobilenet_v2's logits by up to 0.86 and its top-1 on 4 of 500 photos.
        Any other sample (the seeded random probes) is returned as computed.
        """
        order = slice(None, None, -1) if self.channel_order == "BGR" else slice(None)
        mean = np.asarray(self.mean, np.float32)[order].reshape(1, 3, 1, 1)
        std = np.asarray(self.std, np.float32)[order].reshape(1, 3, 1, 1)
        pixels = (batch * std + mean) * np.float32(255)
        whole = np.rint(pixels)
        on_grid = np.abs(pixels - whole).reshape(len(pixels), -1).max(axis=1) < PIXEL_GRID_TOLERANCE
        pixels[on_grid] = whole[on_grid]
        return pixels

    def preprocessing_card(self, card: ModelCard) -> ModelCard:
        """`card` with this contract's resize, crop and normalisation, for `images.preprocess`."""
        return card.replace(input_size=self.input_size, resize_size=self.resize_size,
                            interpolation=self.interpolation, mean=self.mean, std=self.std)
