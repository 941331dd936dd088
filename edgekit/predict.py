"""`edgekit predict`: runs an exported artifact on image files, with the preprocessing its manifest records."""

from __future__ import annotations

from pathlib import Path

from edgekit.classify import check_inputs, top_classes
from edgekit.contract import Contract
from edgekit.images import load_batch
from edgekit.manifest import manifest_card, read_manifest
from edgekit.runners import runner_for


def predict(directory: str | Path, images: list[str | Path], topk: int = 5, threads: int | None = None) -> list[dict]:
    """Top-k classes for each image, from the artifact in `directory` (its own runtime, no PyTorch model).

    Raises:
        InvalidSpecError: no manifest, missing image files, or a bad `topk`.
    """
    directory = Path(directory)
    manifest = read_manifest(directory)
    check_inputs(images, topk)
    card = manifest_card(manifest)
    contract = Contract.from_dict(manifest["contract"])
    batch = contract.channel_order_of(load_batch([Path(p) for p in images], contract.preprocessing_card(card)))
    with runner_for(directory / manifest["artifact"]["file"], contract, threads=threads) as runner:
        logits = runner.infer(batch)
    status = manifest["status"]
    return [{"image": str(p), "artifact_status": status, "topk": top_classes(row, card.class_names, min(topk, card.num_classes))}
            for p, row in zip(images, logits)]
