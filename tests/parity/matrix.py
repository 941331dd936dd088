"""The release parity matrix: every zoo model against every target, unless listed as unsupported."""

from __future__ import annotations

from edgekit.models import get_card, list_models
from edgekit.targets import get_target, list_targets

UNDECIDABLE = ("no offline ImageNet weights, and a seeded random EfficientNet's logits are near ties (the top-1 leads "
               "by under 5% of the logit range on almost every probe), so int8 top-1 agreement cannot be decided; "
               "edgekit refuses to call it verified (tests/exporters/test_families.py checks that refusal). Export "
               "with --weights to verify; EfficientNet-Lite0-2 and MobileNetV2 verify with their ImageNet weights.")


def _unsupported() -> dict[tuple[str, str], str]:
    """(model, target) -> reason. A pair belongs here only with a reason a user can act on."""
    pairs = {}
    for model in list_models():
        card = get_card(model)
        if card.family.startswith("efficientnet") and card.offline_weights is None:
            for target in list_targets():
                if get_target(target).precision in ("int8", "int8-dynamic"):
                    pairs[(model, target)] = UNDECIDABLE
    return pairs


UNSUPPORTED = _unsupported()
ALL_PAIRS = [(model, target) for model in list_models() for target in list_targets()]
MATRIX = [pair for pair in ALL_PAIRS if pair not in UNSUPPORTED]
