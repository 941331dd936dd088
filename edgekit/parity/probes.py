"""Probe inputs: real photos (bundled, or the user's `--data`) plus seeded random tensors."""

from __future__ import annotations

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

    def select(self, kind: str) -> np.ndarray:
        return self.kinds == kind

    def save(self, path: str | Path) -> None:
        """Writes the probes to an .npz file, for a converter process that verifies its own output."""
        same = self.artifact is self.reference or np.array_equal(self.artifact, self.reference)
        np.savez(path, reference=self.reference, artifact=self.reference if same else self.artifact,
                 labels=self.labels, kinds=self.kinds, source=np.array(self.source), same=np.array(same))

    @classmethod
    def load(cls, path: str | Path) -> Probes:
        with np.load(path, allow_pickle=False) as data:
            reference = data["reference"]
            artifact = reference if bool(data["same"]) else data["artifact"]
            return cls(reference, artifact, data["labels"], data["kinds"], str(data["source"]))


def build_probes(card: ModelCard, contract: Contract, data: str | Path | None = None,
                 random_probes: int = RANDOM_PROBES) -> Probes:
    """Real photos preprocessed both ways, then `random_probes` seeded N(0, 1) tensors.

    Without `data`, the photos are the ones that ship with edgekit, whole and mirrored (unlabelled).
    """
    from edgekit import calibration

    artifact_card = contract.preprocessing_card(card)
    if data is None:
        photos = calibration.bundled_images()
        reference = np.concatenate([calibration.photo_views(photos, card, mirrored) for mirrored in (False, True)])
        artifact = reference if artifact_card == card else np.concatenate(
            [calibration.photo_views(photos, artifact_card, mirrored) for mirrored in (False, True)])
        labels, source, count = None, "bundled photos (whole and mirrored)", len(reference)
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
    )
