"""The export spec: everything a step needs, as plain data that crosses into the converter process."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from edgekit.models import ModelCard, model_card


@dataclass(frozen=True)
class ExportSpec:
    """One export request after validation.

    `weights_file` is the resolved, hash-checked checkpoint path (None for random init), and
    `calibration_file` the preprocessed calibration array written for calibrated targets.
    """

    model: str
    target: str
    weights: str | None = None
    weights_file: str | None = None
    num_classes: int | None = None
    input_size: int | None = None
    batch: int = 1
    dynamic_batch: bool = False
    calibration_file: str | None = None
    io_dtype: str = "int8"
    timeout: float = 1800.0
    data: str | None = None

    @cached_property
    def card(self) -> ModelCard:
        return model_card(self.model, num_classes=self.num_classes, input_size=self.input_size)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExportSpec:
        return cls(**data)
