"""Top-1 of artifacts on labelled images and their top-1 agreement with a reference artifact.

    python scripts/agreement.py --data DIR REFERENCE_DIR ARTIFACT_DIR [ARTIFACT_DIR ...]

Each folder is one written by `edgekit export`; images are read as `edgekit predict` reads them
(the manifest's preprocessing contract). Used for the held-out figures of the README's int8 section.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from edgekit.images import find_images, load_batch
from edgekit.manifest import manifest_card, manifest_contract, read_manifest
from edgekit.runners import runner_for


def top1(directory: Path, images) -> np.ndarray:
    """The artifact's top-1 class for every image, one image at a time."""
    manifest = read_manifest(directory)
    contract = manifest_contract(manifest)
    batch = contract.channel_order_of(load_batch([i.path for i in images], contract.preprocessing_card(manifest_card(manifest))))
    with runner_for(directory / manifest["artifact"]["file"], contract, threads=2) as runner:
        return np.array([int(runner.infer(batch[i:i + 1]).argmax()) for i in range(len(batch))])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("reference")
    parser.add_argument("artifacts", nargs="+")
    args = parser.parse_args(argv)
    images = find_images(args.data, manifest_card(read_manifest(args.reference)))
    labels = np.array([-1 if i.label is None else i.label for i in images])
    reference = top1(Path(args.reference), images)
    print(f"{args.reference}: top-1 {100 * np.mean(reference == labels):.1f} on {len(images)} images")
    for directory in args.artifacts:
        predicted = top1(Path(directory), images)
        print(f"{directory}: top-1 {100 * np.mean(predicted == labels):.1f}, "
              f"agreement with the reference {100 * np.mean(predicted == reference):.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
