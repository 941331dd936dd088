"""Training data: torchvision ImageFolders, checked before any training, a seeded split, and the transforms."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from edgekit.card import ModelCard
from edgekit.errors import InvalidInputError, InvalidSpecError, MissingBackendError
from edgekit.images import BROKEN_LIMIT, IMAGE_SUFFIXES

# Images whose shorter side exceeds this many times the card's resize size are kept downscaled in memory.
CACHE_SCALE = 2
_INTERPOLATION = {"nearest": "NEAREST", "bilinear": "BILINEAR", "bicubic": "BICUBIC"}


def torchvision_module(name: str):
    """`torchvision.<name>`, or MissingBackendError naming the extra that installs it."""
    import importlib

    try:
        return importlib.import_module(f"torchvision.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != "torchvision":
            raise
        raise MissingBackendError("edgekit train needs torchvision, which is not installed. "
                                  "Install it with: pip install 'edgekit[train]'") from None


class CachedLoader:
    """Decodes each image once (RGB, downscaled when very large) and keeps it for later epochs."""

    def __init__(self, max_short_side: int) -> None:
        self.max_short_side = max_short_side
        self.images: dict[str, Image.Image] = {}

    def __call__(self, path: str) -> Image.Image:
        if path not in self.images:
            with Image.open(path) as image:
                image = image.convert("RGB")
            short = min(image.size)
            if short > self.max_short_side:
                scale = self.max_short_side / short
                image = image.resize((round(image.width * scale), round(image.height * scale)),
                                     Image.Resampling.BICUBIC, reducing_gap=3.0)
            self.images[path] = image
        return self.images[path]


@dataclass
class Splits:
    """The training and validation datasets and the class names, in label order."""

    train: object
    val: object
    classes: list[str]
    source: str


def open_folder(root: str | Path, loader: CachedLoader, role: str):
    """A torchvision ImageFolder over `root`, refusing folders that cannot be trained on.

    Raises:
        InvalidInputError: no such folder, no class folders, a class folder without images, fewer
            than two classes, or unreadable images (every one named).
    """
    datasets = torchvision_module("datasets")
    root = Path(root)
    if not root.is_dir():
        raise InvalidInputError(f"{role} folder {str(root)!r} does not exist or is not a folder")
    subfolders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subfolders:
        loose = any(p.suffix.lower() in IMAGE_SUFFIXES for p in root.iterdir())
        hint = " (its images lie loose: put each class in its own sub-folder)" if loose else ""
        raise InvalidInputError(f"{role} folder {str(root)!r} has no class folders{hint}; expected the "
                                "ImageFolder layout DIR/<class>/<image>")
    dataset = datasets.ImageFolder(str(root), loader=loader, allow_empty=True,
                                   is_valid_file=lambda p: Path(p).suffix.lower() in IMAGE_SUFFIXES)
    counts = Counter(dataset.targets)
    empty = [name for index, name in enumerate(dataset.classes) if counts[index] == 0]
    if empty:
        raise InvalidInputError(f"{role} folder {str(root)!r}: class folder(s) with no images "
                                f"({', '.join(IMAGE_SUFFIXES)}): {', '.join(empty)}. Add images or remove the folder")
    if len(dataset.classes) < 2:
        raise InvalidInputError(f"{role} folder {str(root)!r} has a single class ({dataset.classes[0]!r}); "
                                "a classifier needs at least two class folders")
    _check_readable(dataset.samples, loader, role)
    return dataset


def _check_readable(samples: list[tuple[str, int]], loader: CachedLoader, role: str) -> None:
    broken = []
    for path, _ in samples:
        try:
            loader(path)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            broken.append(f"{path}: {str(exc) or type(exc).__name__}")
    if broken:
        shown = "\n  ".join(broken[:BROKEN_LIMIT])
        more = f"\n  ... and {len(broken) - BROKEN_LIMIT} more" if len(broken) > BROKEN_LIMIT else ""
        raise InvalidInputError(f"{len(broken)} of {len(samples)} {role} images cannot be read:\n  {shown}{more}\n"
                                "Remove or replace them; nothing was trained")


def load_splits(data: str | Path, card: ModelCard, val: str | Path | None, val_split: float | None,
                augment: float, seed: int) -> Splits:
    """Training and validation datasets: `val` as its own folder, or a stratified `val_split` of `data`.

    Raises:
        InvalidSpecError: both or neither of `val` and `val_split`, or a split out of range.
        InvalidInputError: see `open_folder`; validation classes that training lacks; a class too small to split.
    """
    from torch.utils.data import Subset

    if (val is None) == (val_split is None):
        raise InvalidSpecError("give exactly one of --val DIR and --val-split FRACTION")
    if val_split is not None and not 0 < val_split < 1:
        raise InvalidSpecError(f"--val-split must be between 0 and 1, got {val_split}")
    loader = CachedLoader(CACHE_SCALE * card.resize_size)
    train_tf, eval_tf = train_transform(card, augment), eval_transform(card)
    train = open_folder(data, loader, "training")
    if val is not None:
        held = open_folder(val, loader, "validation")
        extra = sorted(set(held.classes) - set(train.classes))
        if extra:
            raise InvalidInputError(f"validation classes missing from the training folder: {', '.join(extra)}")
        index = {name: i for i, name in enumerate(train.classes)}
        held.target_transform = lambda target: index[held.classes[target]]
        held.transform = eval_tf
        train.transform = train_tf
        return Splits(train, held, list(train.classes), f"--val {val}")
    train_idx, val_idx = _stratified(train.targets, train.classes, val_split, seed)
    held = _copy_with_transform(train, eval_tf)
    train.transform = train_tf
    return Splits(Subset(train, train_idx), Subset(held, val_idx), list(train.classes), f"--val-split {val_split}")


def _copy_with_transform(dataset, transform):
    import copy

    other = copy.copy(dataset)
    other.transform = transform
    return other


def _stratified(targets: list[int], classes: list[str], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Per class, a seeded `fraction` (at least one image) held out; every class keeps one to train on."""
    rng = random.Random(seed)
    by_class: dict[int, list[int]] = {}
    for i, target in enumerate(targets):
        by_class.setdefault(target, []).append(i)
    small = [classes[c] for c, items in by_class.items() if len(items) < 2]
    if small:
        raise InvalidInputError(f"class(es) with a single image cannot be split into training and validation: "
                                f"{', '.join(small)}. Add images or pass --val DIR")
    train_idx, val_idx = [], []
    for items in by_class.values():
        items = items[:]
        rng.shuffle(items)
        held = min(len(items) - 1, max(1, round(len(items) * fraction)))
        val_idx += items[:held]
        train_idx += items[held:]
    return sorted(train_idx), sorted(val_idx)


def eval_transform(card: ModelCard):
    """The card's preprocessing as torchvision transforms: resize, center crop, to tensor, normalise."""
    transforms = torchvision_module("transforms")
    interpolation = getattr(transforms.InterpolationMode, _INTERPOLATION[card.interpolation])
    return transforms.Compose([
        transforms.Resize(card.resize_size, interpolation=interpolation),
        transforms.CenterCrop(card.input_size),
        transforms.ToTensor(),
        transforms.Normalize(card.mean, card.std),
    ])


def train_transform(card: ModelCard, strength: float):
    """RandomResizedCrop, horizontal flip and ColorJitter, scaled by `strength` (1: jitter 0.4, crops from 8%)."""
    transforms = torchvision_module("transforms")
    interpolation = getattr(transforms.InterpolationMode, _INTERPOLATION[card.interpolation])
    if strength == 0:
        return eval_transform(card)
    jitter = 0.4 * strength
    return transforms.Compose([
        transforms.RandomResizedCrop(card.input_size, scale=(max(0.08, 1 - 0.92 * strength), 1.0),
                                     interpolation=interpolation),
        transforms.RandomHorizontalFlip(),
        transforms.ColorJitter(jitter, jitter, jitter),
        transforms.ToTensor(),
        transforms.Normalize(card.mean, card.std),
    ])
