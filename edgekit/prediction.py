"""`edgekit predict`: runs an exported artifact on image files, with the preprocessing its manifest records."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.classify import image_paths, top_classes
from edgekit.images import read_images, unreadable_images
from edgekit.integrity import check_artifact
from edgekit.manifest import manifest_card, manifest_contract, read_manifest
from edgekit.runners import runner_for

# Images read and run at a time: a folder of thousands is never held in memory at once.
CHUNK = 64


def predict(directory: str | Path, images: list[str | Path], topk: int = 5, threads: int | None = None,
            require_signature: str | Path | None = None) -> list[dict]:
    """Top-k classes for each image (a folder stands for its images), from the artifact in `directory`.

    The artifact runs in its own runtime, with no PyTorch model, on `CHUNK` images at a time.

    The artifact's bytes are checked against its manifest's sha256 before anything loads it, and,
    with `require_signature` (a public key), the folder's signature too.

    Raises:
        InvalidSpecError: no manifest, missing image files, a folder without images, or a bad `topk`.
        InvalidInputError: an unreadable image or a damaged manifest.
        IntegrityError: the artifact changed since export, or its signature does not verify.
    """
    directory = Path(directory)
    manifest = read_manifest(directory)
    images = image_paths(images, topk)
    check_artifact(directory, manifest, require_signature)
    card = manifest_card(manifest)
    contract = manifest_contract(manifest)
    preprocessing = contract.preprocessing_card(card)
    logits, broken = [], []
    with runner_for(directory / manifest["artifact"]["file"], contract, threads=threads) as runner:
        for start in range(0, len(images), CHUNK):
            arrays, unreadable = read_images(images[start:start + CHUNK], preprocessing)
            broken += unreadable
            if not broken:
                logits.append(runner.infer(contract.channel_order_of(np.stack(arrays))))
    if broken:
        raise unreadable_images(broken, len(images))
    logits = np.concatenate(logits)
    status = manifest["status"]
    return [{"image": str(p), "artifact_status": status, "topk": top_classes(row, card.class_names, min(topk, card.num_classes))}
            for p, row in zip(images, logits)]
