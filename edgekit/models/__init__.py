"""The reference model zoo: registry, cards, and `create_model`."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from edgekit.errors import InvalidSpecError
from edgekit.models import efficientnet, mobilenetv2, seeded, shufflenetv2  # noqa: F401  (registers the models)
from edgekit.models._registry import get_builder, get_card, list_models, register_model, resolve_name
from edgekit.card import ModelCard
from edgekit.models.weights import checkpoint_metadata, head_prefix, load_weights, weights_path

__all__ = ["ModelCard", "create_model", "get_card", "list_models", "model_card", "register_model", "resolve_name"]


# Seeded random inits built in this process, by (model, classes, seed): measuring BatchNorm statistics takes seconds.
_SEEDED: dict[tuple[str, int, int], dict[str, torch.Tensor]] = {}


def model_card(name: str, num_classes: int | None = None, input_size: int | None = None,
               weights: str | Path | None = None) -> ModelCard:
    """The card of `name`, adjusted for a custom class count or input size.

    A checkpoint written by `edgekit train` (`weights`) brings its class count and names and its input
    size; `num_classes` or `input_size` given here still win.
    """
    card = get_card(name)
    metadata = checkpoint_metadata(weights_path(card, weights)) if weights is not None else None
    if metadata is not None:
        card = _trained_card(card, metadata, weights)
    if num_classes is not None and num_classes != card.num_classes:
        if num_classes < 1:
            raise InvalidSpecError(f"num_classes must be at least 1, got {num_classes}")
        card = card.replace(num_classes=num_classes, label_set=f"custom-{num_classes}", labels=())
    return _resized(card, input_size)


# Larger inputs would need gigabytes per image: 100000 was killed for memory before any check said why.
MAX_INPUT_SIZE = 1024


def _resized(card: ModelCard, input_size: int | None) -> ModelCard:
    if input_size is None or input_size == card.input_size:
        return card
    if input_size < 32:
        raise InvalidSpecError(f"input size must be at least 32, got {input_size}")
    if input_size > MAX_INPUT_SIZE:
        raise InvalidSpecError(f"input size must be at most {MAX_INPUT_SIZE}, got {input_size} (the zoo's models are "
                               f"made for 32 to 300; at {input_size} one image's activations alone would not fit in "
                               "memory)")
    return card.replace(input_size=input_size, resize_size=max(card.resize_size * input_size // card.input_size, input_size))


def _trained_card(card: ModelCard, metadata: dict, weights) -> ModelCard:
    """The card of a fine-tuned checkpoint: its classes, names and input size."""
    from edgekit.errors import WeightsError

    trained_for = metadata.get("model")
    if trained_for is not None and resolve_name(str(trained_for)) != card.name:
        raise WeightsError(f"{weights} was trained for {trained_for}, not {card.name}; export it as {trained_for}")
    names = tuple(str(n) for n in metadata.get("class_names", ()))
    count = int(metadata.get("num_classes", len(names) or card.num_classes))
    if names and len(names) != count:
        raise WeightsError(f"{weights}: {len(names)} class names for {count} classes; the checkpoint is damaged")
    card = card.replace(num_classes=count, label_set=f"custom-{count}", labels=names)
    return _resized(card, int(metadata["input_size"]) if metadata.get("input_size") else None)


def create_model(
    name: str, weights: str | Path | None = None, num_classes: int | None = None, seed: int | None = 0
) -> nn.Module:
    """Builds a zoo model in eval mode, optionally with weights.

    Initialisation is seeded (`seed`, default 0, without touching the global RNG), so a randomly
    initialised model, or a replaced head, is the same in every process: the converter's child
    process and a later `edgekit verify` rebuild exactly the reference that was exported.
    Without weights, BatchNorm affine parameters are drawn too and its statistics measured on a few
    bundled photos (`edgekit.models.seeded`): with default or drawn ones a random network's logits
    hardly depend on the input, and no export of it could be checked.

    Args:
        name: a registered name or alias (see `list_models()`).
        weights: None for random init, "imagenet" for the offline ImageNet weights, or a checkpoint path
            (bare state_dict, a dict holding `state_dict` or `model`, DataParallel `module.` keys; for
            effnet_lite*, also the lukemelas-style layout).
        num_classes: size of the classifier. When it differs from the checkpoint's, the head is
            replaced (freshly initialised) and every other weight is loaded.
        seed: seed of the initialisation; None draws from the global RNG.

    Raises:
        UnknownModelError: `name` is not registered.
        WeightsError: weights cannot be found, verified or loaded.
    """
    card = get_card(name)
    if weights is not None and num_classes is None:
        metadata = checkpoint_metadata(weights_path(card, weights))
        num_classes = None if metadata is None else metadata.get("num_classes")
    classes = num_classes or card.num_classes
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        model = get_builder(card.name)(classes)
        if weights is None and (card.name, classes, seed) in _SEEDED:
            model.load_state_dict(_SEEDED[card.name, classes, seed])
        elif weights is None:
            seeded.draw_batchnorm(model, card)
            if seed is not None:
                _SEEDED[card.name, classes, seed] = {k: v.clone() for k, v in model.state_dict().items()}
    if weights is not None:
        replaced = load_weights(model, card, weights_path(card, weights), allow_new_head=num_classes is not None)
        if replaced is not None:
            model.replaced_head = {"module": head_prefix(model), "checkpoint_classes": replaced, "classes": classes,
                                   "trained": False}
    return model.eval()


def replaced_head(name: str, weights: str | Path | None, num_classes: int | None) -> dict | None:
    """The new, untrained classifier that `create_model(name, weights, num_classes)` puts in place of the checkpoint's
    (module name, the checkpoint's and the new class counts), or None when the checkpoint's head is kept."""
    if weights is None or num_classes is None:
        return None
    return getattr(create_model(name, weights=weights, num_classes=num_classes), "replaced_head", None)
