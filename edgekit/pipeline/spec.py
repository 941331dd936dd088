"""The export spec: everything a step needs, as plain data that crosses into the converter process."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from edgekit.card import ModelCard
from edgekit.errors import InvalidSpecError


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
    io_dtype: str = "uint8"
    timeout: float = 1800.0
    data: str | None = None
    # TensorRT builds: workspace limit, timing cache file (None: one per GPU and TensorRT version under
    # ~/.cache/edgekit), the dynamic-batch profile's opt and max, and layers the FP16 risk check keeps in FP32.
    workspace_mb: int = 2048
    timing_cache: str | None = None
    max_batch: int = 16
    opt_batch: int = 1
    fp32_layers: tuple[str, ...] = ()
    # int8 layers kept in float: PyTorch module names, or ("auto",) to search for the fewest within `max_drop`
    # top-1 points on the images of `data`.
    keep_float: tuple[str, ...] = ()
    max_drop: float | None = None
    # The untrained head put in place of the checkpoint's when `num_classes` differs (models.replaced_head), or None.
    new_head: dict | None = None

    @cached_property
    def card(self) -> ModelCard:
        from edgekit.models import model_card

        return model_card(self.model, num_classes=self.num_classes, input_size=self.input_size, weights=self.weights_file)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExportSpec:
        return cls(**(data | {"fp32_layers": tuple(data.get("fp32_layers", ())),
                             "keep_float": tuple(data.get("keep_float", ()))}))


def check_engine_options(workspace_mb: int, max_batch: int, opt_batch: int) -> None:
    """TensorRT options in range: a positive workspace, and 1 <= opt batch <= max batch."""
    if workspace_mb < 1:
        raise InvalidSpecError(f"--workspace-mb must be at least 1, got {workspace_mb}")
    if not 1 <= opt_batch <= max_batch:
        raise InvalidSpecError(f"the TensorRT profile needs 1 <= --opt-batch <= --max-batch, got {opt_batch} and {max_batch}")


KEEP_FLOAT_TARGETS = ("onnx-int8", "openvino-int8", "tflite-int8")


def check_keep_float(targets: list[str], keep_float: tuple[str, ...], max_drop: float | None, data) -> None:
    """--keep-float and --max-drop: an int8 target that can mix precision, and images to measure the budget on."""
    if not keep_float and max_drop is None:
        return
    if max_drop is not None and keep_float != ("auto",):
        raise InvalidSpecError("--max-drop is the budget of --keep-float auto; pass --keep-float auto with it")
    if keep_float == ("auto",) and (max_drop is None or data is None):
        raise InvalidSpecError("--keep-float auto needs --max-drop POINTS (top-1 points the int8 model may lose) and "
                               "--data DIR (your labelled images, on which the loss is measured)")
    if max_drop is not None and not max_drop >= 0:
        raise InvalidSpecError(f"--max-drop must be a number of top-1 points >= 0, got {max_drop}")
    if "auto" in keep_float and len(keep_float) > 1:
        raise InvalidSpecError("--keep-float takes 'auto' or a list of layer names, not both")
    other = [t for t in targets if t not in KEEP_FLOAT_TARGETS]
    if other:
        raise InvalidSpecError(f"--keep-float applies to {', '.join(KEEP_FLOAT_TARGETS)} only, not {', '.join(other)}."
                               " Export those targets on their own with --keep-float")
