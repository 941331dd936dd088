"""Images in, arrays out: the preprocessing contract of a model card, and labelled image folders."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from edgekit.errors import InvalidInputError, InvalidSpecError
from edgekit.card import ModelCard, imagenet_classes

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
BROKEN_LIMIT = 10
SYNSET = re.compile(r"n\d{8}")
_PIL_INTERPOLATION = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}


@dataclass(frozen=True)
class LabelledImage:
    """An image file and its class index (None when unlabelled)."""

    path: Path
    label: int | None


def preprocess(image: Image.Image, card: ModelCard) -> np.ndarray:
    """Applies the card's contract to one image and returns CHW float32 RGB.

    Resize the shorter side to `resize_size`, center-crop `input_size`, scale to [0, 1] and
    normalise; identical to torchvision's Resize, CenterCrop, ToTensor and Normalize on PIL images.
    """
    image = image.convert("RGB")
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(card.resize_size * long / short)
    size = (card.resize_size, new_long) if width <= height else (new_long, card.resize_size)
    image = image.resize(size, _PIL_INTERPOLATION[card.interpolation])
    crop = card.input_size
    left = int(round((size[0] - crop) / 2.0))
    top = int(round((size[1] - crop) / 2.0))
    image = image.crop((left, top, left + crop, top + crop))
    array = np.asarray(image, dtype=np.float32) / 255.0
    array = (array - np.asarray(card.mean, np.float32)) / np.asarray(card.std, np.float32)
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def load_batch(paths: list[Path], card: ModelCard) -> np.ndarray:
    """Preprocesses image files into one NCHW float32 batch.

    Raises:
        InvalidInputError: naming every file that cannot be read as an image, and why. None of the
            others is used: a run on part of the images the user gave would report on a set they
            did not choose.
    """
    arrays, broken = read_images(paths, card)
    if broken:
        raise unreadable_images(broken, len(paths))
    return np.stack(arrays) if arrays else np.zeros((0, 3, card.input_size, card.input_size), np.float32)


def read_images(paths: list[Path], card: ModelCard) -> tuple[list[np.ndarray], list[str]]:
    """Each readable file preprocessed by `card`, and, for each unreadable one, why (see `unreadable_images`)."""
    arrays, broken = [], []
    for path in paths:
        try:
            arrays.append(read_image(path, card))
        except InvalidInputError as exc:
            broken.append(str(exc))
    return arrays, broken


def unreadable_images(broken: list[str], total: int) -> InvalidInputError:
    """The error for `broken` files (their reasons) among `total`: it names the first few and how many more."""
    shown = "\n  ".join(broken[:BROKEN_LIMIT])
    more = f"\n  ... and {len(broken) - BROKEN_LIMIT} more" if len(broken) > BROKEN_LIMIT else ""
    return InvalidInputError(f"{len(broken)} of {total} image files cannot be read:\n  {shown}{more}\n"
                             "Remove or replace them; nothing was processed")


def read_image(path: str | Path, card: ModelCard) -> np.ndarray:
    """One image file preprocessed by `card`.

    Raises:
        InvalidInputError: the file is missing, not an image, truncated or corrupt, naming it.
    """
    try:
        with Image.open(path) as image:
            return preprocess(image, card)
    except FileNotFoundError:
        raise InvalidInputError(f"{path}: no such file") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        reason = str(exc) or type(exc).__name__
        raise InvalidInputError(f"{path}: not a readable image ({reason})") from None


def image_files(folder: Path) -> list[Path]:
    """The image files under `folder` (subfolders included), sorted by path."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def find_images(root: str | Path, card: ModelCard) -> list[LabelledImage]:
    """Image files under `root`, sorted, each with its label if one can be read.

    Labels come from an ImageNet synset in the file name (`n01440764_tench.JPEG`) for ImageNet
    models, or from an ImageFolder layout (`root/<class>/img.jpg`) whose folder names are synsets,
    the card's class names, or any names (then indexed in sorted order, as torchvision does).
    """
    root = Path(root)
    if not root.is_dir():
        raise InvalidSpecError(f"image folder {str(root)!r} does not exist or is not a folder")
    files = image_files(root)
    if not files:
        raise InvalidSpecError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found under {str(root)!r}")
    folders = sorted({p.parent.relative_to(root).parts[0] for p in files if p.parent != root})
    folder_labels = _folder_labels(folders, card) if folders and all(p.parent != root for p in files) else {}
    imagenet = card.label_set == "imagenet-1k"
    labelled = []
    for path in files:
        if folder_labels:
            label = folder_labels[path.relative_to(root).parts[0]]
        else:
            label = synset_label(path.name) if imagenet else None
        labelled.append(LabelledImage(path, label))
    return labelled


def synset_label(name: str) -> int | None:
    """The ImageNet-1k class index of the synset in a file or folder name (`n01440764_tench.JPEG`), or None."""
    match = SYNSET.search(name)
    return _synset_indices().get(match.group(0)) if match else None


@lru_cache(maxsize=1)
def _synset_indices() -> dict[str, int]:
    return {synset: index for index, synset, _ in imagenet_classes()}


def _folder_labels(folders: list[str], card: ModelCard) -> dict[str, int]:
    if card.label_set == "imagenet-1k" and all(SYNSET.fullmatch(f) for f in folders):
        return {f: label for f in folders if (label := synset_label(f)) is not None}
    names = {name: index for index, name in enumerate(card.class_names)}
    if all(f in names for f in folders):
        return {f: names[f] for f in folders}
    if len(folders) > card.num_classes:
        raise InvalidSpecError(
            f"{len(folders)} class folders but {card.name} has {card.num_classes} classes; "
            "name the folders by synset or by the model's class names"
        )
    return {f: i for i, f in enumerate(folders)}
