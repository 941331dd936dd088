"""The `edgekit` command: parses arguments, calls the Python API, maps errors to exit codes.

Exit codes: 0 success; 1 other failure; 2 bad usage or input (unknown name, bad option, unusable
weights); 3 parity failed; 4 a backend is missing.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from edgekit.errors import EdgekitError


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI and returns its exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return args.handler(args) or 0
    except EdgekitError as exc:
        print(f"edgekit: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("edgekit: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgekit", description="Export reference image classifiers to edge formats, verified.")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    models = commands.add_parser("models", help="list the model zoo")
    models.add_argument("--json", action="store_true", help="print JSON instead of a table")
    models.set_defaults(handler=_models)

    classify = commands.add_parser("classify", help="classify images with a zoo model in PyTorch (the reference)")
    classify.add_argument("model")
    classify.add_argument("images", nargs="+", metavar="IMAGE")
    classify.add_argument("--weights", default="imagenet", help="'imagenet' (offline) or a checkpoint path")
    classify.add_argument("--num-classes", type=int, default=None)
    classify.add_argument("--topk", type=int, default=5)
    classify.add_argument("--json", action="store_true")
    classify.set_defaults(handler=_classify)
    return parser


def _models(args: argparse.Namespace) -> int:
    from edgekit.models import get_card, list_models
    from edgekit.models.weights import offline_status

    rows = []
    for name in list_models():
        card = get_card(name)
        rows.append({
            "name": name,
            "aliases": list(card.aliases),
            "family": card.family,
            "input_size": card.input_size,
            "num_classes": card.num_classes,
            "params_m": round(card.params / 1e6, 2),
            "gmacs": round(card.macs / 1e9, 3),
            "imagenet_weights": offline_status(card),
        })
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = ("name", "family", "input", "params", "GMACs", "offline imagenet weights")
    table = [(r["name"], r["family"], str(r["input_size"]), f"{r['params_m']:.2f}M", f"{r['gmacs']:.3f}", r["imagenet_weights"]) for r in rows]
    print(_table(header, table))
    return 0


def _classify(args: argparse.Namespace) -> int:
    from edgekit.classify import classify_images

    results = classify_images(args.model, args.images, weights=args.weights, num_classes=args.num_classes, topk=args.topk)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for result in results:
        print(result["image"])
        for rank, guess in enumerate(result["topk"], start=1):
            print(f"  {rank}. {guess['name']:<32} {guess['probability']:7.2%}")
    return 0


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in (header, *rows)]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
