"""Fine-tuning before export: `edgekit train` and `edgekit eval`.

Imported lazily, so registering the commands loads neither PyTorch nor torchvision.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "train": "edgekit.training.loop",
    "TrainResult": "edgekit.training.loop",
    "Recipe": "edgekit.training.recipe",
    "evaluate": "edgekit.training.scoring",
    "EvalResult": "edgekit.training.scoring",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'edgekit.training' has no attribute {name!r}")
