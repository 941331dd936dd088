"""Probe inputs: real photos (bundled, or the user's `--data`) plus seeded random tensors."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.contract import Contract
from edgekit.images import find_images, load_batch
from edgekit.card import ModelCard

RANDOM_PROBES = 8
RANDOM_SEED = 20261122


@dataclass
class Probes:
    """The same probes twice: preprocessed by the card (reference) and by the artifact's contract."""

    reference: np.ndarray
    artifact: np.ndarray
    labels: np.ndarray
    kinds: np.ndarray
    source: str
    # The photos are the user's own (--data), not the bundled ones: agreement over all of them is gated.
    own_photos: bool = False

    def select(self, kind: str) -> np.ndarray:
        return self.kinds == kind

    def save(self, path: str | Path) -> None:
        """Writes the probes to an .npz file, for a converter process that verifies its own output."""
        same = self.artifact is self.reference or np.array_equal(self.artifact, self.reference)
        np.savez(path, reference=self.reference, artifact=self.reference if same else self.artifact,
                 labels=self.labels, kinds=self.kinds, source=np.array(self.source), same=np.array(same),
                 own_photos=np.array(self.own_photos))

    @classmethod
    def load(cls, path: str | Path) -> Probes:
        with np.load(path, allow_pickle=False) as data:
            reference = data["reference"]
            artifact = reference if bool(data["same"]) else data["artifact"]
            own = bool(data["own_photos"]) if "own_photos" in data.files else False
            return cls(reference, artifact, data["labels"], data["kinds"], str(data["source"]), own)


def build_probes(card: ModelCard, contract: Contract, data: str | Path | None = None,
                 random_probes: int = RANDOM_PROBES) -> Probes:
    """Real photos preprocessed both ways, then `random_probes` seeded N(0, 1) tensors.

    Without `data`, the photos are the ones that ship with edgekit, in views (crops, mirror images,
    brightness and colour) that calibration never uses (`calibration.PROBE_VIEWS`), unlabelled.
    """
    from edgekit import calibration

    artifact_card = contract.preprocessing_card(card)
    if data is None:
        reference = calibration.probe_views(card)
        artifact = reference if artifact_card == card else calibration.probe_views(artifact_card)
        labels, count = None, len(reference)
        source = (f"views of the {len(calibration.bundled_images())} bundled photos that calibration never uses "
                  f"({len(calibration.PROBE_VIEWS)} each: other crops, mirrored, brightness and colour changed)")
    else:
        items = find_images(data, card)
        paths, labels, source = [i.path for i in items], [-1 if i.label is None else i.label for i in items], str(data)
        reference = load_batch(paths, card)
        artifact = load_batch(paths, artifact_card) if artifact_card != card else reference
        count = len(paths)
    artifact = contract.channel_order_of(artifact)
    rng = np.random.default_rng(RANDOM_SEED)
    noise = rng.standard_normal((random_probes, 3, card.input_size, card.input_size), dtype=np.float32)
    kinds = np.array(["image"] * count + ["random"] * random_probes)
    labels_array = np.array((labels or [-1] * count) + [-1] * random_probes, dtype=np.int64)
    return Probes(
        reference=np.concatenate([reference, noise]),
        artifact=np.concatenate([artifact, noise]) if contract.input_size == card.input_size else artifact,
        labels=labels_array,
        kinds=kinds,
        source=f"{count} {source} + {random_probes} random tensors (seed {RANDOM_SEED})",
        own_photos=data is not None,
    )


def probe_notes(card: ModelCard, data: str | Path | None, calib: str | Path | None, calib_size: int) -> list[str]:
    """What a report must say about its probes beside the calibration set: how they differ, or how they overlap."""
    if data is None:
        return ["The probes are views of the bundled photos that calibration never uses (other crops, mirrored, "
                "brightness and colour changed); pass --data with your own images for a check on your data."]
    if calib is None or not Path(calib).is_dir():
        return []
    calibrated = {_digest(item.path) for item in find_images(calib, card)[:calib_size]}
    shared = [item.path for item in find_images(data, card) if _digest(item.path) in calibrated]
    if not shared:
        return []
    return [f"{len(shared)} of the --data images also calibrated this artifact (the same files are in --calib, e.g. "
            f"{shared[0].name}); agreement on them flatters int8: probe with images calibration did not see."]


def _digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
