"""edgekit: export reference PyTorch image classifiers to edge formats, verified against PyTorch.

The public API is imported lazily, so `import edgekit` and `edgekit --help` stay fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "list_models": "edgekit.models",
    "create_model": "edgekit.models",
    "get_card": "edgekit.models",
    "model_card": "edgekit.models",
    "ModelCard": "edgekit.models",
    "export": "edgekit.pipeline.export",
    "Artifact": "edgekit.pipeline.artifact",
    "verify": "edgekit.reverify",
    "ParityReport": "edgekit.parity",
    "list_targets": "edgekit.targets",
    "predict": "edgekit.prediction",
    "train": "edgekit.training",
    "evaluate": "edgekit.training",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'edgekit' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The lazy API too, so `dir(edgekit)` and editors' completion list it."""
    return sorted({*globals(), *_LAZY})
