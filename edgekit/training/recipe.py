"""The fine-tuning recipe: its options and defaults, the model's stages, freezing and layer-wise learning rates."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edgekit.errors import InvalidSpecError, did_you_mean

if TYPE_CHECKING:  # the CLI reads the defaults without loading PyTorch
    from torch import nn

# Defaults chosen for a few hundred images on a 2-core CPU: the ImageNet backbone frozen except its
# last two stages, a short cosine schedule, AdamW. `freeze=None` means "-2" from pretrained weights
# and "none" from random init (frozen random features learn nothing).
DEFAULT_FREEZE_PRETRAINED = "-2"


@dataclass(frozen=True)
class Recipe:
    """Every training option; recorded whole in the checkpoint and the history.

    `freeze`: "none", "all" (every stage but the head), "N" (the first N stages), "-N" (all but the
    last N) or comma-separated stage names (see `stages`). `lr` is the head's learning rate; a stage
    d stages below the head gets `lr * lr_decay**d`, unless `stage_lr` gives its multiplier.
    """

    epochs: int = 6
    batch_size: int = 32
    lr: float = 1e-3
    lr_decay: float = 0.5
    stage_lr: dict[str, float] = field(default_factory=dict)
    weight_decay: float = 0.01
    warmup_epochs: float = 0.5
    label_smoothing: float = 0.1
    ema_decay: float = 0.99
    clip_norm: float = 1.0
    accumulate: int = 1
    augment: float = 1.0
    freeze: str | None = None
    seed: int = 0
    amp: bool | None = None
    input_size: int | None = None

    def __post_init__(self) -> None:
        checks = [
            ("epochs", self.epochs >= 1, "at least 1"),
            ("batch_size", self.batch_size >= 1, "at least 1"),
            ("lr", self.lr > 0, "positive"),
            ("lr_decay", 0 < self.lr_decay <= 1, "in (0, 1]"),
            ("weight_decay", self.weight_decay >= 0, "0 or more"),
            ("warmup_epochs", 0 <= self.warmup_epochs < self.epochs, "0 or more and below epochs"),
            ("label_smoothing", 0 <= self.label_smoothing < 1, "in [0, 1)"),
            ("ema_decay", 0 <= self.ema_decay < 1, "in [0, 1) (0 turns EMA off)"),
            ("clip_norm", self.clip_norm >= 0, "0 (off) or more"),
            ("accumulate", self.accumulate >= 1, "at least 1"),
            ("augment", 0 <= self.augment <= 2, "in [0, 2]"),
        ]
        bad = [f"{name} must be {rule}, got {getattr(self, name)!r}" for name, ok, rule in checks if not ok]
        bad += [f"stage_lr[{k!r}] must be 0 or more, got {v}" for k, v in self.stage_lr.items() if v < 0]
        if bad:
            raise InvalidSpecError("bad training recipe: " + "; ".join(bad))

    def replace(self, **changes: Any) -> Recipe:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def stages(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's backbone stages in forward order, by their module names, without the head.

    A model whose backbone is a `features` Sequential (MobileNetV2, EfficientNet, EfficientNet-Lite)
    has stages `features.0` ... `features.N`; otherwise every top-level child holding parameters is
    one (ShuffleNetV2: `conv1`, `stage2`, `stage3`, `stage4`, `conv5`). The head is the module holding
    the classifier (`classifier` or `fc`).
    """
    from torch import nn

    head = head_name(model)
    found = []
    for name, child in model.named_children():
        if name == head or not any(True for _ in child.parameters()):
            continue
        if name == "features" and isinstance(child, nn.Sequential):
            found += [(f"features.{i}", block) for i, block in enumerate(child)]
        else:
            found.append((name, child))
    return found


def head_name(model: nn.Module) -> str:
    """The top-level module holding the classifier."""
    from edgekit.models.weights import head_prefix

    return head_prefix(model).split(".")[0]


def resolve_freeze(spec: str, names: list[str], model_name: str) -> list[str]:
    """The stage names `spec` freezes.

    Raises:
        InvalidSpecError: a name the model lacks (with a did-you-mean), or more stages than exist.
    """
    spec = spec.strip()
    listing = f"{model_name} has {len(names)} stages: {', '.join(names)}"
    if spec == "none":
        return []
    if spec == "all":
        return list(names)
    if spec.lstrip("-").isdigit():
        count = int(spec)
        if abs(count) > len(names):
            raise InvalidSpecError(f"--freeze {spec}: cannot freeze more stages than exist; {listing}. "
                                   "'all' trains the head only")
        return names[:count] if count >= 0 else names[:len(names) + count]
    wanted = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in names]
    if unknown:
        hints = "".join(did_you_mean(s, names) for s in unknown)
        raise InvalidSpecError(f"--freeze names stage(s) {', '.join(map(repr, unknown))} that {model_name} lacks."
                               f"{hints} {listing}")
    return [n for n in names if n in wanted]


def apply_freeze(model: nn.Module, frozen: list[str]) -> None:
    """Turns off gradients of the frozen stages' parameters."""
    lookup = dict(stages(model))
    for name in frozen:
        for parameter in lookup[name].parameters():
            parameter.requires_grad_(False)


def set_train_mode(model: nn.Module, frozen: list[str]) -> None:
    """Training mode, except frozen stages, whose BatchNorm statistics must stay as pretrained."""
    model.train()
    lookup = dict(stages(model))
    for name in frozen:
        lookup[name].eval()


def param_groups(model: nn.Module, recipe: Recipe, frozen: list[str]) -> list[dict[str, Any]]:
    """One optimizer group per trainable stage and the head, with its layer-wise learning rate.

    No weight decay on biases and normalisation parameters (1-D tensors).
    """
    order = [*stages(model), (head_name(model), getattr(model, head_name(model)))]
    unknown = [s for s in recipe.stage_lr if s not in dict(order)]
    if unknown:
        names = [n for n, _ in order]
        raise InvalidSpecError(f"--stage-lr names stage(s) {', '.join(map(repr, unknown))} that the model lacks."
                               f"{''.join(did_you_mean(s, names) for s in unknown)} Stages: {', '.join(names)}")
    groups = []
    for depth, (name, module) in enumerate(reversed(order)):
        if name in frozen:
            continue
        multiplier = recipe.stage_lr.get(name, recipe.lr_decay ** depth)
        params = [p for p in module.parameters() if p.requires_grad]
        if not params or multiplier == 0:
            for p in params:
                p.requires_grad_(False)
            continue
        for decay, chosen in ((recipe.weight_decay, [p for p in params if p.ndim > 1]),
                              (0.0, [p for p in params if p.ndim <= 1])):
            if chosen:
                groups.append({"params": chosen, "stage": name, "lr_multiplier": multiplier,
                               "lr": recipe.lr * multiplier, "weight_decay": decay})
    return groups


def describe_groups(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The param groups as JSON-ready rows: stage, lr multiplier, lr, weight decay, parameter count."""
    rows: dict[str, dict[str, Any]] = {}
    for group in groups:
        row = rows.setdefault(group["stage"], {"stage": group["stage"], "lr_multiplier": group["lr_multiplier"],
                                                "lr": group.get("initial_lr", group["lr"]), "params": 0})
        row["params"] += sum(p.numel() for p in group["params"])
    return list(rows.values())
