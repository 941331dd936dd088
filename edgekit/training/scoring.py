"""`edgekit eval`: top-1, top-5 and a confusion matrix of a checkpoint or an exported artifact on labelled images.

Labels come from class folders named by the model's class names, or, for ImageNet models, from the synset in
each file name (`n01440764_tench.JPEG`, as `--data` reads them for export and bench).

Both run on the same preprocessing (`edgekit.images`, the card's contract), so their figures compare.
An artifact runs in its own runtime through `edgekit.runners` and needs no PyTorch.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import InvalidInputError
from edgekit.classify import infer_in_chunks
from edgekit.images import IMAGE_SUFFIXES, image_files, synset_label
from edgekit.manifest import MANIFEST, write_json

FULL_CONFUSION = 50  # models with more classes get a confusion matrix over the classes present only
REPORT = "eval.json"
CONFUSION = "confusion.png"


@dataclass
class EvalResult:
    """Scores of one model on one labelled folder."""

    source: str
    kind: str
    images: int
    top1: float
    top5: float
    classes: list[str]  # the confusion matrix's rows and columns
    confusion: list[list[int]]
    confusion_of: str  # "every class", or "classes present" (true or predicted) for models with many classes
    per_class_top1: dict[str, float]
    files: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def evaluate(source: str | Path, data: str | Path, out: str | Path | None = None) -> EvalResult:
    """Scores a checkpoint written by `edgekit train`, or an artifact folder, on labelled images.

    Class folders are matched to the model's class names by name; a folder that names no class is an
    error, classes without a folder are simply absent. Without class folders, an ImageNet model reads
    each file's label from the synset in its name. A model with more than `FULL_CONFUSION` classes gets
    its confusion matrix over the classes that occur (true or predicted), so that it can be drawn. Writes `eval.json` and `confusion.png` to `out`
    (default: `edgekit-eval/<source name>/`).

    Raises:
        InvalidInputError: folders that name no class of the model, no images, unreadable images.
        InvalidSpecError, WeightsError, IntegrityError: an unusable checkpoint or artifact.
    """
    source = Path(source)
    with ExitStack() as stack:
        card, reading, infer, kind = _artifact(source, stack) if source.is_dir() else _checkpoint(source)
        paths, labels = _labelled(Path(data), card)
        logits = infer_in_chunks(paths, reading, infer)
    result = _scores(str(source), kind, logits, np.asarray(labels), list(card.class_names))
    out = Path(out) if out is not None else Path("edgekit-eval") / (source.name if kind == "artifact" else source.parent.name)
    out.mkdir(parents=True, exist_ok=True)
    result.files = {"report": str(out / REPORT), "confusion": str(out / CONFUSION)}
    from edgekit.training.report import plot_confusion

    shown = "" if result.confusion_of == "every class" else f" ({len(result.classes)} of {len(card.class_names)} classes occur)"
    plot_confusion(result.confusion, result.classes, out / CONFUSION,
                   f"{source.name}: top-1 {result.top1:.1%} on {result.images} images{shown}")
    write_json(out / REPORT, result.to_dict())
    return result


def _artifact(directory: Path, stack: ExitStack):
    from edgekit.integrity import check_files
    from edgekit.manifest import manifest_card, manifest_contract, read_manifest
    from edgekit.runners import runner_for

    manifest = read_manifest(directory)
    check_files(directory, manifest)
    card = manifest_card(manifest)
    contract = manifest_contract(manifest)
    runner = stack.enter_context(runner_for(directory / manifest["artifact"]["file"], contract))

    def infer(batch: np.ndarray) -> np.ndarray:
        return runner.infer(contract.channel_order_of(batch))

    return card, contract.preprocessing_card(card), infer, "artifact"


def _checkpoint(path: Path):
    import torch

    from edgekit.errors import InvalidSpecError
    from edgekit.models import create_model, model_card
    from edgekit.models.weights import checkpoint_metadata

    if not path.is_file():
        raise InvalidSpecError(f"{path} is neither a checkpoint file nor an artifact folder (with {MANIFEST})")
    metadata = checkpoint_metadata(path)
    if not metadata or not metadata.get("model"):
        raise InvalidSpecError(f"{path} was not written by 'edgekit train' (no model name in it); export it "
                               "with 'edgekit export MODEL --weights PATH' and evaluate the artifact folder")
    card = model_card(metadata["model"], weights=path)
    net = create_model(metadata["model"], weights=path)

    def infer(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return net(torch.from_numpy(batch)).numpy()

    return card, card, infer, "checkpoint"


def _labelled(root: Path, card) -> tuple[list[Path], list[int]]:
    if not root.is_dir():
        raise InvalidInputError(f"image folder {str(root)!r} does not exist or is not a folder")
    class_names = list(card.class_names)
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    index = {name: i for i, name in enumerate(class_names)}
    unknown = [f.name for f in folders if f.name not in index]
    if not folders and card.label_set == "imagenet-1k" and (named := _synset_labels(root)):
        return named
    if not folders or unknown:
        shown = ", ".join(class_names[:20]) + (", ..." if len(class_names) > 20 else "")
        what = f"folder(s) {', '.join(unknown)} name no class of the model" if folders else "it has no class folders"
        synsets = " or name each file by its ImageNet synset (n01440764_tench.JPEG)" if card.label_set == "imagenet-1k" else ""
        raise InvalidInputError(f"{root}: {what}. Lay it out as DIR/<class name>/<image> with the model's class "
                                f"names ({shown}){synsets}")
    paths, labels = [], []
    for folder in folders:
        for path in image_files(folder):
            paths.append(path)
            labels.append(index[folder.name])
    if not paths:
        raise InvalidInputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {root}")
    return paths, labels


def _synset_labels(root: Path) -> tuple[list[Path], list[int]] | None:
    """Images labelled by the ImageNet synset in their names; None when no name has one. Raises if only some do."""
    paths = image_files(root)
    labels = [synset_label(p.name) for p in paths]
    unlabelled = [p.name for p, label in zip(paths, labels) if label is None]
    if len(unlabelled) == len(paths):
        return None
    if unlabelled:
        raise InvalidInputError(f"{root}: {len(unlabelled)} of {len(paths)} images name no ImageNet synset "
                                f"({', '.join(unlabelled[:5])}{', ...' if len(unlabelled) > 5 else ''}); name every "
                                "file by its synset (n01440764_tench.JPEG) or use class folders")
    return paths, labels


def _scores(source: str, kind: str, logits: np.ndarray, labels: np.ndarray, classes: list[str]) -> EvalResult:
    ranked = np.argsort(-logits, axis=1)[:, :5]
    top1 = ranked[:, 0] == labels
    top5 = (ranked == labels[:, None]).any(axis=1)
    present = sorted(set(labels.tolist()))
    every = len(classes) <= FULL_CONFUSION
    shown = list(range(len(classes))) if every else sorted(set(present) | set(ranked[:, 0].tolist()))
    position = {c: i for i, c in enumerate(shown)}
    matrix = np.zeros((len(shown), len(shown)), dtype=int)
    np.add.at(matrix, ([position[c] for c in labels.tolist()], [position[c] for c in ranked[:, 0].tolist()]), 1)
    per_class = {classes[c]: round(float(top1[labels == c].mean()), 4) for c in present}
    return EvalResult(source, kind, len(labels), round(float(top1.mean()), 4), round(float(top5.mean()), 4),
                      [classes[c] for c in shown], matrix.tolist(), "every class" if every else "classes present",
                      per_class, {})
