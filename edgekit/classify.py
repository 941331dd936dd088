"""Classifying image files with a zoo model in PyTorch eager mode, the reference of every export.

The top-k helpers serve `edgekit predict` too, which runs without PyTorch, so torch is imported on use.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgekit.errors import InvalidSpecError
from edgekit.images import IMAGE_SUFFIXES, image_files, read_images, unreadable_images

# Images read and run at a time by classify and predict.
CHUNK = 32


def top_classes(logits: np.ndarray, class_names: tuple[str, ...], k: int) -> list[dict]:
    """The k most probable classes of one logit vector, with softmax probabilities."""
    shifted = np.exp(logits - logits.max())
    probabilities = shifted / shifted.sum()
    order = np.argsort(-probabilities)[:k]
    return [{"index": int(i), "name": class_names[i], "probability": float(probabilities[i])} for i in order]


def image_paths(images: str | Path | list[str | Path], topk: int) -> list[Path]:
    """The image files to classify: each file as given, each folder's images (sorted, subfolders included).

    One path, not in a list, is one file or folder (a string is not taken for a list of one-letter paths).

    Raises:
        InvalidSpecError: a missing path, a folder with no images, or a top-k below 1, naming them.
    """
    if topk < 1:
        raise InvalidSpecError(f"--topk must be at least 1, got {topk}")
    if isinstance(images, (str, os.PathLike)):
        images = [images]
    missing = [str(p) for p in images if not Path(p).exists()]
    if missing:
        raise InvalidSpecError(f"image file(s) not found: {', '.join(missing)}")
    expanded = [(Path(p), image_files(Path(p)) if Path(p).is_dir() else [Path(p)]) for p in images]
    empty = [str(path) for path, files in expanded if not files]
    if empty:
        raise InvalidSpecError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder(s): {', '.join(empty)}")
    return [file for _, files in expanded for file in files]


def infer_in_chunks(images: list[Path], card, infer: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Logits of `images`, read (preprocessed by `card`) and run `CHUNK` at a time, so a folder of thousands is
    never one array.

    Raises:
        InvalidInputError: naming every unreadable file; nothing is returned for the others.
    """
    logits, broken = [], []
    for start in range(0, len(images), CHUNK):
        arrays, unreadable = read_images(images[start:start + CHUNK], card)
        broken += unreadable
        if not broken:
            logits.append(infer(np.stack(arrays)))
    if broken:
        raise unreadable_images(broken, len(images))
    return np.concatenate(logits)


def classify_images(
    model: str,
    images: str | Path | list[str | Path],
    weights: str | Path | None = "imagenet",
    num_classes: int | None = None,
    topk: int = 5,
) -> list[dict]:
    """Runs a zoo model on image files (or folders of them) with its card's preprocessing; the top-k per image."""
    import torch

    from edgekit.models import create_model, model_card

    card = model_card(model, num_classes=num_classes)
    images = image_paths(images, topk)
    net = create_model(model, weights=weights, num_classes=num_classes)
    with torch.no_grad():
        logits = infer_in_chunks(images, card, lambda batch: net(torch.from_numpy(batch)).numpy())
    return [{"image": str(p), "topk": top_classes(row, card.class_names, min(topk, card.num_classes))} for p, row in zip(images, logits)]
