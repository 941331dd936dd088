"""`edgekit predict`: runs an exported artifact on image files, with the preprocessing its manifest records."""

from __future__ import annotations

from pathlib import Path

from edgekit.classify import image_paths, infer_in_chunks, top_classes
from edgekit.integrity import check_artifact
from edgekit.manifest import manifest_card, manifest_contract, read_manifest
from edgekit.runners import runner_for


def predict(directory: str | Path, images: str | Path | list[str | Path], topk: int = 5, threads: int | None = None,
            require_signature: str | Path | None = None) -> list[dict]:
    """Top-k classes for each image (a folder stands for its images), from the artifact in `directory`.

    The artifact runs in its own runtime, with no PyTorch model, on a few images at a time (`classify.CHUNK`).

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
    with runner_for(directory / manifest["artifact"]["file"], contract, threads=threads) as runner:
        logits = infer_in_chunks(images, contract.preprocessing_card(card),
                                 lambda batch: runner.infer(contract.channel_order_of(batch)))
    status = manifest["status"]
    return [{"image": str(p), "artifact_status": status, "topk": top_classes(row, card.class_names, min(topk, card.num_classes))}
            for p, row in zip(images, logits)]
