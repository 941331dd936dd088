"""The model registry: each builder is registered under its card's name and aliases."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from edgekit.errors import UnknownModelError, did_you_mean
from edgekit.card import ModelCard

Builder = Callable[[int], nn.Module]

_CARDS: dict[str, ModelCard] = {}
_BUILDERS: dict[str, Builder] = {}
_ALIASES: dict[str, str] = {}


def register_model(card: ModelCard) -> Callable[[Builder], Builder]:
    """Registers a builder `fn(num_classes) -> nn.Module` under `card.name` and its aliases.

    Raises:
        ValueError: if the name or an alias is taken already.
    """

    def wrap(builder: Builder) -> Builder:
        for name in (card.name, *card.aliases):
            if name in _CARDS or name in _ALIASES:
                raise ValueError(f"model name {name!r} is registered twice")
        _CARDS[card.name] = card
        _BUILDERS[card.name] = builder
        _ALIASES.update({alias: card.name for alias in card.aliases})
        return builder

    return wrap


def resolve_name(name: str) -> str:
    """Returns the canonical name for a name or alias.

    Raises:
        UnknownModelError: with a did-you-mean suggestion.
    """
    if name in _CARDS:
        return name
    if name in _ALIASES:
        return _ALIASES[name]
    known = [*_CARDS, *_ALIASES]
    raise UnknownModelError(
        f"unknown model {name!r}.{did_you_mean(name, known)} Run 'edgekit models' to list them."
    )


def get_card(name: str) -> ModelCard:
    """The frozen card of a model, by name or alias."""
    return _CARDS[resolve_name(name)]


def get_builder(name: str) -> Builder:
    """The architecture builder of a model, by name or alias."""
    return _BUILDERS[resolve_name(name)]


def list_models(family: str | None = None) -> list[str]:
    """Canonical model names in registration order, optionally of one family."""
    return [name for name, card in _CARDS.items() if family is None or card.family == family]
