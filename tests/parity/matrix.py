"""The release parity matrix: every zoo model against every target, unless listed as unsupported."""

from __future__ import annotations

from edgekit.models import list_models
from edgekit.targets import list_targets

# (model, target) -> reason. A pair belongs here only with a reason a user can act on.
UNSUPPORTED: dict[tuple[str, str], str] = {}

ALL_PAIRS = [(model, target) for model in list_models() for target in list_targets()]
MATRIX = [pair for pair in ALL_PAIRS if pair not in UNSUPPORTED]
