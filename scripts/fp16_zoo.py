"""The FP16 risk report for every zoo model: `python scripts/fp16_zoo.py OUT.md`.

Models with offline ImageNet weights use them; the others use edgekit's seeded random init.
"""

from __future__ import annotations

import sys

from edgekit.fp16 import FP16_MAX, check_fp16
from edgekit.models import get_card, list_models


def main() -> int:
    lines = ["| model | weights | worst layer | max abs | share below FP16 normal | emulated FP16 cosine (min) | "
             "top-1 agreement | expected FP16 parity | keep in FP32 |", "|---|---|---|---|---|---|---|---|---|"]
    for name in list_models():
        weights = "imagenet" if get_card(name).offline_weights else None
        report = check_fp16(name, weights=weights)
        worst, images = report.worst, report.emulated["images"]
        agreement = "n/a" if images["top1_agreement"] is None else f"{images['top1_agreement']:.1%} of {images['decisive_probes']}"
        lines.append(
            f"| {name} | {weights or 'seeded random'} | {worst.name} ({worst.kind}) | {worst.absmax:.3g} "
            f"({worst.absmax / FP16_MAX:.2%} of max) | {worst.underflow:.1%} | {images['cosine_mean']:.6f} "
            f"({images['cosine_min']:.6f}) | {agreement} | {'passes' if report.passed else 'fails'} | "
            f"{', '.join(report.keep_fp32()) or '-'} |")
        print(lines[-1], flush=True)
    with open(sys.argv[1], "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
