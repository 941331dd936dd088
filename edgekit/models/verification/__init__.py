"""A verification-only initialisation for models that have no offline weights (`weights="verification"`).

A seeded random EfficientNet-Lite3-4 or -B0 gives near-tie logits on every photo, so no int8 artifact of
it can be judged: top-1 agreement needs probes whose top-1 is decisive. This builds weights that behave
like a trained network's without pretending to be one, from the trained Lite of the same family. Two kinds:

- **transplant** (effnet_lite3-4, `transplant`): the convolutions, BatchNorm and classifier of the trained
  effnet_lite2 (the same layout at width 1.1 and depth 1.2) are copied by position. Where the target is
  wider, channels are repeated (and a wider fan-in scaled down); where it is deeper, a stage's extra blocks
  copy its last block and start near the identity. BatchNorm statistics are then re-estimated on views of
  the bundled photos (the calibration views; the verifier's probes are other views), and no variance falls
  below the trained one (see `transplant.reestimate`). effnet_lite3: 53.8% top-1 on `imagenet-sample`.
- **fitted** (effnet_b0, `distill`): the trained effnet_lite0's weights copied into B0 likewise, then each of
  B0's units fitted to Lite0's output on calibration views, int8 rounding simulated, since SiLU and
  squeeze-and-excitation on transplanted ReLU6 weights alone gave near ties. 65% top-1 on `imagenet-sample`.

Its int8 artifacts verify as a trained model's do: an int8 artifact's agreement with it is a real
measurement of the int8 path, and a wrong one shows. It says nothing about the accuracy of a trained
model, in fp32 or int8. It is built deterministically (one thread) and cached; its sha256 is in every
manifest that uses it, so `edgekit verify` rebuilds what was exported on any CPU of the same kind. Its float
arithmetic follows the CPU's vector instructions (PyTorch's `cpu_capability`, recorded in the manifest): B0's
file built on an AVX-512 Zen 4 and on an AVX2 Zen 3 differ (sha256 17983ca6... and 6c414041..., 2026-12-07), so
`edgekit verify` elsewhere says so and names the file to copy (`mismatch`).

EfficientNet-B1-B3 have none: the same fitting from Lite1 left B1's right int8 artifacts at 55-74% (docs/models.md).
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import torch
from torch import nn

from edgekit.card import ModelCard
from edgekit.errors import WeightsError
from edgekit.models.verification import distill
from edgekit.models.verification.transplant import reestimate, transplant

KEYWORD = "verification"
# 4: the tensors of 3, saved so that the file's bytes, whose sha256 manifests record, are the same in every process
# (version 3's file embedded the name of the process's temporary file, so a rebuild elsewhere never matched).
VERSION = 4
# Model -> the trained model of the same family whose weights it starts from.
SOURCES = {"effnet_lite3": "effnet_lite2", "effnet_lite4": "effnet_lite2", "effnet_b0": "effnet_lite0"}
# Models whose init is fitted to the source's outputs (`distill`); the others are transplanted and re-estimated.
FITTED = ("effnet_b0",)
# Calibration views of the bundled photos that BatchNorm statistics are re-estimated on (3 views of 20).
VIEWS = 60


def supported(card: ModelCard) -> bool:
    """Whether a verification init exists for this model."""
    return card.name in SOURCES


def describe(card: ModelCard) -> dict:
    """What the manifest records about the init: how it was built, and what it can and cannot show."""
    source = SOURCES[card.name]
    common = {"kind": "edgekit verification init", "version": VERSION, "source_model": source,
              "source_weights": "imagenet (offline)", "cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "shows": "whether each artifact computes what this network computes, int8 included, on decisive photos",
              "does_not_show": f"the accuracy of a trained {card.name}, in fp32 or int8"}
    if card.name in FITTED:
        recipe = distill.RECIPE
        return {**common, "fit": dict(recipe), "method": (
            f"{source}'s weights copied by position (its SAME padding made symmetric), then each unit (stem, MBConv "
            f"blocks, head) fitted with Adam to {source}'s output on {recipe['views']} calibration views of the "
            f"bundled photos at {recipe['size']} px, {recipe['steps']} steps each, int8 rounding of activations and "
            "weights simulated along the chain")}
    return {**common, "batchnorm_views": VIEWS, "method": (
        f"{source}'s trained convolutions, BatchNorm and classifier copied by position (channels repeated where wider, "
        f"extra blocks near identity where deeper); BatchNorm statistics re-estimated on {VIEWS} views of the bundled "
        "photos, no variance below the trained one")}


def summary(card: ModelCard) -> str:
    """One line for an export's report: what the init is, in words."""
    how = ("fitted unit by unit to its outputs" if card.name in FITTED
           else "transplanted, BatchNorm re-estimated on the bundled photos")
    return f"{SOURCES[card.name]}'s trained weights {how}; not a trained model"


def size_note(card: ModelCard, input_size: int | None) -> str | None:
    """What to expect when the init is used at another input size than the one its verdicts were measured at.

    effnet_b0's init verifies its static int8 targets at 224 px on thin margins (logit SQNR about 12 dB); at 240 px
    the same right artifacts agreed on 94.4% (onnx-int8) and 88.9% (executorch-int8) of decisive probes, below the
    95% bar (docs/models.md, session 21)."""
    if input_size is None or input_size == card.input_size:
        return None
    return (f"its int8 verdicts were measured at {card.input_size} px; at {input_size} px its int8 margin may not hold "
            f"(effnet_b0's init at 240 px failed 2 of 3 right static int8 artifacts, docs/models.md), so a PARITY "
            f"FAILED at this size may be about the init rather than the artifact.")


def cache_path(card: ModelCard) -> Path:
    """Where the built init is kept: one file per model, class count and init version."""
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgekit" / "verification"
    return root / f"{card.name}-{card.num_classes}-v{VERSION}.pt"


def verification_weights(card: ModelCard) -> Path:
    """The cached checkpoint of `card`'s verification init, built on first use (one thread: lite3 70 s, b0 4-5 min)."""
    path = cache_path(card)
    if not path.is_file():
        print(f"edgekit: building {card.name}'s verification init once ({summary(card)}); it is cached in {path}",
              file=sys.stderr, flush=True)
        state = build(card)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        partial.write_bytes(serialize(state))
        if path.exists():  # a rival process finished first: keep its file, whose sha256 may be recorded already
            partial.unlink()
        else:
            os.replace(partial, path)
    return path


def mismatch(card: ModelCard, recorded: dict, built: Path, actual: str) -> str:
    """Why `edgekit verify` cannot use the init built here (sha256 `actual`) for an artifact whose manifest records
    another, and what to do."""
    exported_on = (recorded.get("init") or {}).get("cpu_capability")
    here = torch.backends.cpu.get_cpu_capability()
    if exported_on == here:
        why = (f"both machines' PyTorch kernels are {here}, so the pinned versions differ (compare the manifest's "
               f"`tools` with this install) or the file was changed")
    else:
        kinds = (f"were {exported_on}, this one's are {here}" if exported_on
                 else f"are not recorded, this one's are {here}")
        why = (f"the init is computed in float arithmetic whose last bits follow the CPU's vector instructions (the "
               f"exporting machine's PyTorch kernels {kinds}), so each kind of CPU builds other weights")
    return (f"{card.name}'s verification init built here ({built}, sha256 {actual}) is not the one this artifact was "
            f"exported from (sha256 {recorded['sha256']}): {why}. Copy that file from the exporting machine's cache "
            f"to {built}, or export the artifact again here.")


def serialize(state: dict[str, torch.Tensor]) -> bytes:
    """`torch.save` bytes that depend on the tensors only (a file path would name the archive inside after itself)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def build(card: ModelCard) -> dict[str, torch.Tensor]:
    """The verification init's state_dict (one thread, so every CPU of one kind with these pins builds the same
    bytes; see the module's docstring)."""
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
        if card.name in FITTED:
            distill.symmetric_padding(source)
            distill.start(source, target, source_card, card)
            size = distill.RECIPE["views"]
            views = [torch.from_numpy(load_calibration(c, size=size).data) for c in (source_card, card)]
            distill.fit(source, target, *views,
                        say=lambda text: print(f"  verification init: {text}", file=sys.stderr, flush=True))
        else:
            with torch.no_grad():
                transplant(source, target)
                floors = {norm: norm.running_var.clone() for norm in target.modules()
                          if isinstance(norm, nn.BatchNorm2d)}
                reestimate(target, torch.from_numpy(load_calibration(card, size=VIEWS).data), floors)
        return target.state_dict()
    finally:
        torch.set_num_threads(threads)
