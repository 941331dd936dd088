"""Classifying image files with a zoo model in PyTorch eager mode, the reference of every export.

The top-k helpers serve `edgekit predict` too, which runs without PyTorch, so torch is imported on use.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.errors import InvalidSpecError
from edgekit.images import load_batch


def top_classes(logits: np.ndarray, class_names: tuple[str, ...], k: int) -> list[dict]:
    """The k most probable classes of one logit vector, with softmax probabilities."""
    shifted = np.exp(logits - logits.max())
    probabilities = shifted / shifted.sum()
    order = np.argsort(-probabilities)[:k]
    return [{"index": int(i), "name": class_names[i], "probability": float(probabilities[i])} for i in order]


def check_inputs(images: list[str | Path], topk: int) -> None:
    """Refuses missing image files and a top-k below 1, naming them."""
    if topk < 1:
        raise InvalidSpecError(f"--topk must be at least 1, got {topk}")
    missing = [str(p) for p in images if not Path(p).is_file()]
    if missing:
        raise InvalidSpecError(f"image file(s) not found: {', '.join(missing)}")


def classify_images(
    model: str,
    images: list[str | Path],
    weights: str | Path | None = "imagenet",
    num_classes: int | None = None,
    topk: int = 5,
) -> list[dict]:
    """Runs a zoo model on image files with its card's preprocessing; returns the top-k per image."""
    import torch

    from edgekit.models import create_model, model_card

    card = model_card(model, num_classes=num_classes)
    check_inputs(images, topk)
    net = create_model(model, weights=weights, num_classes=num_classes)
    with torch.no_grad():
        logits = net(torch.from_numpy(load_batch([Path(p) for p in images], card))).numpy()
    return [{"image": str(p), "topk": top_classes(row, card.class_names, min(topk, card.num_classes))} for p, row in zip(images, logits)]
