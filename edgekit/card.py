"""The frozen model card: everything exporters, the verifier and `predict` need to know about a model.

It imports no model code and no PyTorch, so `edgekit predict` runs on devices without them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic")


@dataclass(frozen=True)
class OfflineWeights:
    """ImageNet weights that an installable package ships, so they load with no network."""

    package: str
    module: str
    path: str
    sha256: str


@dataclass(frozen=True)
class ModelCard:
    """A model's fixed facts, kept apart from its architecture.

    Preprocessing contract: resize the shorter side to `resize_size` with `interpolation`,
    center-crop `input_size` x `input_size`, scale to [0, 1], subtract `mean`, divide by `std`.
    The model takes NCHW float32 RGB.
    """

    name: str
    family: str
    input_size: int
    resize_size: int
    interpolation: str
    num_classes: int
    params: int
    macs: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    label_set: str = "imagenet-1k"
    aliases: tuple[str, ...] = ()
    offline_weights: OfflineWeights | None = None
    # Class names of a label set that only this card knows (a fine-tuned checkpoint's), in output order.
    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.labels and len(self.labels) != self.num_classes:
            raise ValueError(f"{self.name}: {len(self.labels)} class names for {self.num_classes} classes")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"{self.name}: interpolation must be one of {INTERPOLATIONS}")
        if self.resize_size < self.input_size:
            raise ValueError(f"{self.name}: resize_size {self.resize_size} is below input_size {self.input_size}")

    @property
    def class_names(self) -> tuple[str, ...]:
        """Class names in checkpoint order."""
        return self.labels or class_names(self.label_set)

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """The NCHW shape of one preprocessed image."""
        return (1, 3, self.input_size, self.input_size)

    def replace(self, **changes: Any) -> ModelCard:
        """Returns a copy with some fields changed (for a custom head or input size)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The card as plain JSON-ready data, without the class names."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        """The card back from `to_dict` (as a manifest records it), with no model code imported."""
        data = dict(data)
        for key in ("mean", "std", "aliases", "labels"):
            data[key] = tuple(data.get(key, ()))
        if data.get("offline_weights"):
            data["offline_weights"] = OfflineWeights(**data["offline_weights"])
        return cls(**data)


@lru_cache(maxsize=None)
def class_names(label_set: str) -> tuple[str, ...]:
    """The class names of a label set shipped with edgekit."""
    if label_set == "cifar-10":
        return CIFAR10_CLASSES
    if label_set == "imagenet-1k":
        return tuple(row[2] for row in imagenet_classes())
    if label_set.startswith("custom-"):
        return tuple(f"class_{i}" for i in range(int(label_set.split("-", 1)[1])))
    raise ValueError(f"unknown label set {label_set!r}")


@lru_cache(maxsize=None)
def imagenet_classes() -> tuple[tuple[int, str, str], ...]:
    """(index, synset, name) for the 1000 ImageNet-1k classes in checkpoint order."""
    text = resources.files("edgekit.data").joinpath("imagenet_classes.tsv").read_text(encoding="utf-8")
    rows = [line.split("\t") for line in text.splitlines()[1:] if line.strip()]
    return tuple((int(i), synset, name) for i, synset, name in rows)
