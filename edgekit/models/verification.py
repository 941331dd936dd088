"""A verification-only initialisation for models that have no offline weights (`weights="verification"`).

A seeded random EfficientNet-Lite3 or Lite4 gives near-tie logits on every photo, so no int8 artifact
of it can be judged: top-1 agreement needs probes whose top-1 is decisive. This builds weights that
behave like a trained network's without pretending to be one:

1. The convolutions, BatchNorm and classifier of the trained effnet_lite2 (offline ImageNet weights,
   the same layout at width 1.1 and depth 1.2) are copied by position. Where the target is wider,
   channels are repeated (and a wider fan-in scaled down); where it is deeper, a stage's extra blocks
   copy its last block and start near the identity.
2. BatchNorm statistics are re-estimated on views of the bundled photos (the calibration views; the
   verifier's probes are other views), and no variance falls below the trained one (see `_reestimate`).

The result classifies ImageNet photos far from chance (effnet_lite3 53.8% top-1 on `imagenet-sample`,
71% of its photos decisive), and its int8 artifacts verify as a trained Lite's do: an int8 artifact's
agreement with it is a real measurement of the int8 path, and a wrong one shows. It says nothing about
the accuracy of a trained model, in fp32 or int8. It is built deterministically (one thread) and
cached; its sha256 is in every manifest that uses it, so `edgekit verify` rebuilds what was exported.

EfficientNet-B0-B3 have none: the same transplant (SiLU and squeeze-and-excitation added to Lite
weights) was measured and not shipped, see docs/models.md.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import torch
from torch import nn

from edgekit.card import ModelCard
from edgekit.errors import WeightsError
from edgekit.models.seeded import measure_batchnorm

KEYWORD = "verification"
# 4: the tensors of 3, saved so that the file's bytes, whose sha256 manifests record, are the same in every process
# (version 3's file embedded the name of the process's temporary file, so a rebuild elsewhere never matched).
VERSION = 4
# Model -> the trained model of the same family whose weights are transplanted.
SOURCES = {"effnet_lite3": "effnet_lite2", "effnet_lite4": "effnet_lite2"}
# Calibration views of the bundled photos that BatchNorm statistics are re-estimated on (3 views of 20).
VIEWS = 60
# Extra residual blocks of a deeper target start as this fraction of their copied block's output.
NEW_BLOCK_GAIN = 0.2


def supported(card: ModelCard) -> bool:
    """Whether a verification init exists for this model."""
    return card.name in SOURCES


def describe(card: ModelCard) -> dict:
    """What the manifest records about the init: how it was built, and what it can and cannot show."""
    source = SOURCES[card.name]
    return {
        "kind": "edgekit verification init", "version": VERSION, "source_model": source,
        "source_weights": "imagenet (offline)", "batchnorm_views": VIEWS,
        "method": (f"{source}'s trained convolutions, BatchNorm and classifier copied by position (channels repeated "
                   f"where wider, extra blocks near identity where deeper); BatchNorm statistics re-estimated on {VIEWS} "
                   "views of the bundled photos, no variance below the trained one"),
        "shows": "whether each artifact computes what this network computes, int8 included, on decisive photos",
        "does_not_show": f"the accuracy of a trained {card.name}, in fp32 or int8",
    }


def cache_path(card: ModelCard) -> Path:
    """Where the built init is kept: one file per model, class count and init version."""
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgekit" / "verification"
    return root / f"{card.name}-{card.num_classes}-v{VERSION}.pt"


def verification_weights(card: ModelCard) -> Path:
    """The cached checkpoint of `card`'s verification init, built on first use (lite3: about 70 s on one thread)."""
    path = cache_path(card)
    if not path.is_file():
        state = build(card)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        partial.write_bytes(serialize(state))
        if path.exists():  # a rival process finished first: keep its file, whose sha256 may be recorded already
            partial.unlink()
        else:
            os.replace(partial, path)
    return path


def serialize(state: dict[str, torch.Tensor]) -> bytes:
    """`torch.save` bytes that depend on the tensors only (a file path would name the archive inside after itself)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def build(card: ModelCard) -> dict[str, torch.Tensor]:
    """The verification init's state_dict (one thread, so every machine with these pins builds the same bytes)."""
    from edgekit.calibration import load_calibration
    from edgekit.models import create_model, get_card

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        source_card = get_card(SOURCES[card.name])
        try:
            source = create_model(source_card.name, weights="imagenet")
        except WeightsError as exc:
            raise WeightsError(f"the verification init of {card.name} is built from {source_card.name}'s ImageNet "
                               f"weights: {exc}") from exc
        target = create_model(card.name, num_classes=card.num_classes)
        with torch.no_grad():
            _transplant(source, target)
            floors = {norm: norm.running_var.clone() for norm in target.modules() if isinstance(norm, nn.BatchNorm2d)}
            _reestimate(target, torch.from_numpy(load_calibration(card, size=VIEWS).data), floors)
        return target.state_dict()
    finally:
        torch.set_num_threads(threads)


def _fit(tensor: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """`tensor` repeated along each dimension that is too short, then cut to `shape`."""
    for dim, size in enumerate(shape):
        if tensor.shape[dim] < size:
            repeats = [1] * tensor.ndim
            repeats[dim] = -(-size // tensor.shape[dim])
            tensor = tensor.repeat(*repeats)
        tensor = tensor.narrow(dim, 0, size)
    return tensor.clone()


def _copy_conv_bn(source: nn.Sequential, target: nn.Sequential) -> None:
    s_conv, s_bn, t_conv, t_bn = source[0], source[1], target[0], target[1]
    weight = _fit(s_conv.weight, t_conv.weight.shape)
    if t_conv.groups == 1:
        weight *= s_conv.weight.shape[1] / t_conv.weight.shape[1]  # repeated inputs would add up
    t_conv.weight.copy_(weight)
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(t_bn, name).copy_(_fit(getattr(s_bn, name), getattr(t_bn, name).shape))


def _conv_layers(block: nn.Module) -> list[nn.Sequential]:
    return [m for m in block.block if isinstance(m, nn.Sequential)]


def _transplant(source: nn.Module, target: nn.Module) -> None:
    _copy_conv_bn(source.features[0], target.features[0])
    for source_stage, target_stage in zip(list(source.features)[1:-1], list(target.features)[1:-1]):
        for index, block in enumerate(target_stage):
            own = _conv_layers(block)
            for s_layer, t_layer in zip(_conv_layers(source_stage[min(index, len(source_stage) - 1)]), own):
                _copy_conv_bn(s_layer, t_layer)
            if index >= len(source_stage):
                own[-1][1].weight.mul_(NEW_BLOCK_GAIN)
                own[-1][1].bias.mul_(NEW_BLOCK_GAIN)
    _copy_conv_bn(source.features[-1], target.features[-1])
    s_fc, t_fc = source.classifier[-1], target.classifier[-1]
    t_fc.weight.copy_(_fit(s_fc.weight, t_fc.weight.shape) * (s_fc.weight.shape[1] / t_fc.weight.shape[1]))
    t_fc.bias.copy_(_fit(s_fc.bias, t_fc.bias.shape))


def _reestimate(model: nn.Module, images: torch.Tensor, floors: dict[nn.Module, torch.Tensor]) -> None:
    """BatchNorm running statistics from `images` (cumulative average); everything else stays in eval mode.

    No variance falls below its floor. A few dozen views of 20 photos spread less than ImageNet does, and dividing
    by that smaller spread turns quiet channels into noise amplifiers: re-estimated without a floor, the trained
    effnet_lite2's own int8 agreed on 72.7% of decisive probes (98.2% with its trained variances as the floor), and
    its float32 ONNX export missed the fp32 tolerance.
    """
    measure_batchnorm(model, images)
    for norm, floor in floors.items():
        norm.running_var.copy_(torch.maximum(norm.running_var, floor))
