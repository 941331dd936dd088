"""The `train` and `eval` subcommands: parse, build a Recipe, call `edgekit.training`."""

from __future__ import annotations

import argparse
import json
import sys

from edgekit.errors import InvalidSpecError
from edgekit.training.recipe import DEFAULT_FREEZE_PRETRAINED, Recipe

_DEFAULTS = Recipe()
MAX_PRINTED = 50  # per-class lines printed; more go to eval.json only


def add_commands(subparsers) -> None:
    """Registers `edgekit train` and `edgekit eval` on the main parser's subparsers."""
    train = subparsers.add_parser("train", help="fine-tune a zoo model on an ImageFolder (new head for its classes)")
    train.add_argument("model")
    train.add_argument("--data", required=True, help="training ImageFolder: DIR/<class>/<image>")
    held = train.add_mutually_exclusive_group(required=True)
    held.add_argument("--val", default=None, help="validation ImageFolder with the same class folders")
    held.add_argument("--val-split", type=float, default=None, help="fraction of --data held out, per class (e.g. 0.2)")
    train.add_argument("--out", required=True, help="run folder: checkpoint.pt, history.json, curves.png")
    train.add_argument("--weights", default="imagenet", help="'imagenet' (offline), a checkpoint path, or 'none' (default: imagenet)")
    train.add_argument("--freeze", default=None,
                       help="stages to freeze: 'none', 'all' (head only), N (the first N), -N (all but the last N), "
                            "or comma-separated stage names such as features.0,features.1 or conv1,stage2 "
                            f"(default: {DEFAULT_FREEZE_PRETRAINED} from pretrained weights, none from random init)")
    _number(train, "--epochs", int, "epochs")
    _number(train, "--batch-size", int, "batch_size")
    _number(train, "--lr", float, "lr", "the head's learning rate (AdamW)")
    _number(train, "--lr-decay", float, "lr_decay", "layer-wise: each stage below the head gets this factor more")
    train.add_argument("--stage-lr", default=None, metavar="STAGE=MULT,...",
                       help="explicit learning-rate multipliers per stage, overriding --lr-decay (0 freezes)")
    _number(train, "--weight-decay", float, "weight_decay")
    _number(train, "--warmup-epochs", float, "warmup_epochs", "linear warm-up before the cosine schedule")
    _number(train, "--label-smoothing", float, "label_smoothing")
    _number(train, "--ema-decay", float, "ema_decay", "EMA of the weights; 0 turns it off")
    _number(train, "--clip-norm", float, "clip_norm", "gradient clipping by total norm; 0 turns it off")
    _number(train, "--accumulate", int, "accumulate", "batches per optimizer step")
    _number(train, "--augment", float, "augment", "augmentation strength: 0 none, 1 RandomResizedCrop 8-100%% + "
                                                  "flip + ColorJitter 0.4")
    _number(train, "--seed", int, "seed")
    train.add_argument("--input-size", type=int, default=None, help="train (and export) at this size; default: the card's")
    train.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                       help="mixed precision (default: on with CUDA, off on CPU)")
    train.add_argument("--threads", type=int, default=None, help="PyTorch CPU threads (default: PyTorch's choice)")
    train.add_argument("--force", action="store_true", help="replace an existing --out folder")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(handler=_train)

    score = subparsers.add_parser("eval", help="top-1/top-5 and a confusion matrix of a checkpoint or artifact folder")
    score.add_argument("source", metavar="CKPT_OR_ARTIFACT_DIR")
    score.add_argument("--data", required=True, help="ImageFolder whose folder names are the model's class names")
    score.add_argument("--out", default=None, help="folder for eval.json and confusion.png (default: edgekit-eval/<name>)")
    score.add_argument("--json", action="store_true")
    score.set_defaults(handler=_eval)


def _number(parser, flag: str, kind, field: str, text: str = "") -> None:
    default = getattr(_DEFAULTS, field)
    parser.add_argument(flag, type=kind, default=None, dest=field,
                        help=f"{text}{'; ' if text else ''}default {default}")


def _stage_lr(text: str | None) -> dict[str, float]:
    if not text:
        return {}
    result = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        try:
            result[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise InvalidSpecError(f"--stage-lr expects STAGE=MULT,... ; cannot read {item!r}")
    return result


def _train(args: argparse.Namespace) -> int:
    from edgekit.training.loop import train

    fields = ("epochs", "batch_size", "lr", "lr_decay", "weight_decay", "warmup_epochs", "label_smoothing",
              "ema_decay", "clip_norm", "accumulate", "augment", "seed")
    options = {f: getattr(args, f) for f in fields if getattr(args, f) is not None}
    warmup = options.get("warmup_epochs", _DEFAULTS.warmup_epochs)
    if "epochs" in options and "warmup_epochs" not in options and warmup >= options["epochs"]:
        options["warmup_epochs"] = 0.0
    recipe = Recipe(**options, stage_lr=_stage_lr(args.stage_lr), freeze=args.freeze, amp=args.amp,
                    input_size=args.input_size)
    weights = None if args.weights == "none" else args.weights
    result = train(args.model, args.data, out=args.out, val=args.val, val_split=args.val_split, weights=weights,
                   recipe=recipe, force=args.force, progress=not args.quiet, threads=args.threads)
    print(result.checkpoint)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from edgekit.training.scoring import evaluate

    result = evaluate(args.source, args.data, out=args.out)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    print(f"{result.source} ({result.kind}): top-1 {result.top1:.1%}, top-5 {result.top5:.1%} on {result.images} images")
    if len(result.per_class_top1) <= MAX_PRINTED:
        for name, score in result.per_class_top1.items():
            print(f"  {name:<24} {score:6.1%}")
    else:
        print(f"  per-class top-1 of {len(result.per_class_top1)} classes: in {result.files['report']}")
    for kind, path in result.files.items():
        print(f"{kind}: {path}", file=sys.stderr)
    return 0
