"""The release parity matrix: every zoo model against every target, unless listed as unsupported."""

from __future__ import annotations

from edgekit.models import list_models
from edgekit.targets import get_target, list_targets

# Models with no offline ImageNet weights whose seeded random init leaves (almost) no decisive
# probe: the reference top-1 leads by under 5% of the logit range, so int8 agreement cannot be
# decided and edgekit refuses to call such an artifact verified. Found by `make parity` on
# 2026-11-22 (0 decisive probes for shufflenet_v2_x1_5 and x2_0; EfficientNet B0-B3, Lite3-4 likewise).
UNDECIDABLE = ("effnet_b0", "effnet_b1", "effnet_b2", "effnet_b3", "effnet_lite3", "effnet_lite4",
               "shufflenet_v2_x1_5", "shufflenet_v2_x2_0")
UNDECIDABLE_REASON = (
    "no offline ImageNet weights, and this model's seeded random logits are near ties (the top-1 leads by under 5% "
    "of the logit range on almost every probe), so int8 top-1 agreement cannot be decided; edgekit refuses to call "
    "it verified (tests/exporters/test_families.py checks that refusal). Export with --weights to verify. The int8 "
    "paths are verified on MobileNetV2 and EfficientNet-Lite0-2 (ImageNet weights) and ShuffleNetV2 x0.5/x1.0.")


def _unsupported() -> dict[tuple[str, str], str]:
    """(model, target) -> reason. A pair belongs here only with a reason a user can act on."""
    return {(model, target): UNDECIDABLE_REASON for model in UNDECIDABLE for target in list_targets()
            if get_target(target).precision in ("int8", "int8-dynamic")}


UNSUPPORTED = _unsupported()
ALL_PAIRS = [(model, target) for model in list_models() for target in list_targets()]
MATRIX = [pair for pair in ALL_PAIRS if pair not in UNSUPPORTED]
