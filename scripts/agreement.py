"""Top-1 of artifacts on labelled images, and their fidelity to a reference artifact.

    python scripts/agreement.py --data DIR REFERENCE_DIR ARTIFACT_DIR [ARTIFACT_DIR ...]

Each folder is one written by `edgekit export`; images are read as `edgekit predict` reads them
(the manifest's preprocessing contract), one at a time. For each artifact it prints top-1, top-1
agreement with the reference over all images and over the even- and odd-numbered ones (sorted order,
the halves the README's int8 tables calibrate and score on), and the logit SQNR against the
reference. Used for the held-out figures of the README's int8 section.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from edgekit.images import find_images, load_batch
from edgekit.manifest import manifest_card, manifest_contract, read_manifest
from edgekit.runners import runner_for


def logits(directory: Path, images) -> np.ndarray:
    """The artifact's logits for every image, one image at a time."""
    manifest = read_manifest(directory)
    contract = manifest_contract(manifest)
    batch = contract.channel_order_of(load_batch([i.path for i in images], contract.preprocessing_card(manifest_card(manifest))))
    with runner_for(directory / manifest["artifact"]["file"], contract, threads=2) as runner:
        return np.concatenate([runner.infer(batch[i:i + 1]) for i in range(len(batch))])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("reference")
    parser.add_argument("artifacts", nargs="+")
    args = parser.parse_args(argv)
    images = find_images(args.data, manifest_card(read_manifest(args.reference)))
    labels = np.array([-1 if i.label is None else i.label for i in images])
    reference = logits(Path(args.reference), images)
    top1 = reference.argmax(1)
    print(f"{args.reference}: top-1 {100 * np.mean(top1 == labels):.1f} on {len(images)} images "
          f"(even {100 * np.mean(top1[0::2] == labels[0::2]):.1f}, odd {100 * np.mean(top1[1::2] == labels[1::2]):.1f})")
    for directory in args.artifacts:
        output = logits(Path(directory), images)
        agree = output.argmax(1) == top1
        right = output.argmax(1) == labels
        sqnr = 10 * np.log10(np.sum(reference ** 2) / max(float(np.sum((output - reference) ** 2)), 1e-30))
        print(f"{directory}: top-1 {100 * right.mean():.1f} (even {100 * right[0::2].mean():.1f}, odd "
              f"{100 * right[1::2].mean():.1f}), agreement with the reference {100 * agree.mean():.1f}% (even "
              f"{100 * agree[0::2].mean():.1f}%, odd {100 * agree[1::2].mean():.1f}%), logit SQNR {sqnr:.1f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
