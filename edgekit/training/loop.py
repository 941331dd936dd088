"""`edgekit train`: fine-tunes a zoo model on an ImageFolder and writes a checkpoint `edgekit export` takes as it is."""

from __future__ import annotations

import copy
import math
import os
import resource
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekit.errors import InvalidSpecError
from edgekit.manifest import place, write_json
from edgekit.models import create_model, get_card, model_card
from edgekit.models.weights import METADATA_KEY
from edgekit.training import recipe as recipes
from edgekit.training.data import Splits, load_splits
from edgekit.training.recipe import Recipe

CHECKPOINT = "checkpoint.pt"
HISTORY = "history.json"
CURVES = "curves.png"


@dataclass
class TrainResult:
    """A finished run: its folder, checkpoint, history rows and the chosen epoch."""

    directory: Path
    checkpoint: Path
    history: list[dict[str, Any]]
    best: dict[str, Any]
    recipe: dict[str, Any]


class EMA:
    """Exponential moving average of all weights and buffers, with the usual warm-up of the decay."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for mine, theirs in zip(self.module.state_dict().values(), model.state_dict().values()):
            if mine.dtype.is_floating_point:
                mine.mul_(decay).add_(theirs.detach(), alpha=1 - decay)
            else:
                mine.copy_(theirs)


def train(
    model: str,
    data: str | Path,
    *,
    out: str | Path,
    val: str | Path | None = None,
    val_split: float | None = None,
    weights: str | Path | None = "imagenet",
    recipe: Recipe | None = None,
    force: bool = False,
    progress: bool = True,
    threads: int | None = None,
    **options: Any,
) -> TrainResult:
    """Fine-tunes `model` on an ImageFolder, with a new head sized to its classes.

    Writes `out/` atomically (built beside it, renamed into place): `checkpoint.pt` (the best epoch by
    validation top-1, of the raw or the EMA weights, with its metadata under "edgekit"), `history.json`
    (the recipe, the param groups and one row per epoch) and `curves.png`.

    Args:
        model: zoo model name or alias.
        data: training ImageFolder (`DIR/<class>/<image>`).
        out: the run's folder; an existing one is replaced only with `force`.
        val, val_split: a validation ImageFolder, or the fraction of `data` to hold out (stratified, seeded).
        weights: "imagenet" (offline), a checkpoint path, or None for random init.
        recipe: the training options (`Recipe`); `options` override single fields of it.
        threads: PyTorch CPU threads for this run (default: as set). On a busy machine 1 is often fastest.

    Raises:
        InvalidSpecError: bad options, an unknown or excess `freeze`, an existing `out` without `force`.
        InvalidInputError: unusable folders: empty, one class, an empty class folder, unreadable images.
        WeightsError: weights that cannot be loaded.
    """
    from edgekit.training.report import check_backends

    check_backends(progress)
    recipe = (recipe or Recipe()).replace(**options) if options else (recipe or Recipe())
    out = Path(out)
    if threads is not None and threads < 1:
        raise InvalidSpecError(f"--threads must be at least 1, got {threads}")
    if out.exists() and not force:
        raise InvalidSpecError(f"{out} already exists; pass --force to replace it")
    card = get_card(model)
    if recipe.freeze is None:
        recipe = recipe.replace(freeze=recipes.DEFAULT_FREEZE_PRETRAINED if weights is not None else "none")
    card = model_card(card.name, input_size=recipe.input_size)
    splits = load_splits(data, card, val, val_split, recipe.augment, recipe.seed)
    card = card.replace(num_classes=len(splits.classes), label_set=f"custom-{len(splits.classes)}",
                        labels=tuple(splits.classes))
    net = create_model(card.name, weights=weights, num_classes=len(splits.classes), seed=recipe.seed)
    frozen = recipes.resolve_freeze(recipe.freeze, [n for n, _ in recipes.stages(net)], card.name)
    recipes.apply_freeze(net, frozen)
    groups = recipes.param_groups(net, recipe, frozen)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    amp = device.type == "cuda" if recipe.amp is None else recipe.amp
    if amp and device.type != "cuda":
        raise InvalidSpecError("--amp needs a CUDA device; none is available here")
    recipe = recipe.replace(amp=amp)

    work = out.parent / f".{out.name}.partial-{os.getpid()}"
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    previous_threads = torch.get_num_threads()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        result = _run(net, card, splits, recipe, frozen, groups, device, weights, work, progress)
        place(work, out, force=force)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        torch.set_num_threads(previous_threads)
    result.directory, result.checkpoint = out, out / CHECKPOINT
    return result


def _run(net, card, splits: Splits, recipe: Recipe, frozen, groups, device, weights, work: Path,
         progress: bool) -> TrainResult:
    from torch.utils.data import DataLoader

    from edgekit.training.report import EpochBar, plot_curves

    generator = torch.Generator().manual_seed(recipe.seed)
    train_loader = DataLoader(splits.train, batch_size=recipe.batch_size, shuffle=True, generator=generator,
                              drop_last=len(splits.train) > recipe.batch_size)
    val_loader = DataLoader(splits.val, batch_size=max(recipe.batch_size, 64))
    net.to(device)
    optimizer = torch.optim.AdamW(groups)
    steps_per_epoch = math.ceil(len(train_loader) / recipe.accumulate)
    schedule = _cosine(optimizer, steps_per_epoch * recipe.epochs, round(steps_per_epoch * recipe.warmup_epochs))
    scaler = torch.amp.GradScaler("cuda", enabled=recipe.amp)
    ema = EMA(net, recipe.ema_decay) if recipe.ema_decay > 0 else None
    loss_fn = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    summary = _summary(card, splits, recipe, frozen, groups, device, weights)
    if progress:
        _print_summary(summary)
    history, best, best_state = [], None, None
    started = time.perf_counter()
    for epoch in range(1, recipe.epochs + 1):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(recipe.seed * 1000 + epoch)
            bar = EpochBar(epoch, recipe.epochs, len(train_loader), enabled=progress)
            row = _train_epoch(net, train_loader, optimizer, schedule, scaler, ema, loss_fn, recipe, frozen, device, bar)
        row.update(_score(net, val_loader, device, recipe.amp, "val"))
        if ema is not None:
            row.update(_score(ema.module, val_loader, device, recipe.amp, "ema_val"))
        row.update(epoch=epoch, lr=optimizer.param_groups[-1]["lr"], seconds=round(time.perf_counter() - started, 1))
        bar.close(row)
        history.append(row)
        for source, module in (("raw", net), ("ema", ema.module if ema else None)):
            key = "val_top1" if source == "raw" else "ema_val_top1"
            if module is not None and (best is None or row[key] > best["val_top1"]):
                best = {"epoch": epoch, "weights": source, "val_top1": row[key],
                        "val_top5": row[key.replace("top1", "top5")]}
                best_state = {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
        write_json(work / HISTORY, {**summary, "history": history, "best": best})
    summary["wall_seconds"] = round(time.perf_counter() - started, 1)
    summary["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    _save_checkpoint(work / CHECKPOINT, best_state, card, summary, best)
    write_json(work / HISTORY, {**summary, "history": history, "best": best})
    plot_curves(history, work / CURVES, f"{card.name} on {len(splits.classes)} classes")
    if progress:
        print(f"best: epoch {best['epoch']} ({best['weights']} weights), val top-1 {best['val_top1']:.1%}",
              file=sys.stderr)
    return TrainResult(work, work / CHECKPOINT, history, best, summary["recipe"])


def _summary(card, splits: Splits, recipe: Recipe, frozen, groups, device, weights) -> dict[str, Any]:
    return {
        "model": card.name,
        "weights": None if weights is None else str(weights),
        "classes": list(splits.classes),
        "train_images": len(splits.train),
        "val_images": len(splits.val),
        "validation": splits.source,
        "val_files": _files(splits.val, splits.classes),
        "input_size": card.input_size,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "recipe": recipe.to_dict(),
        "frozen": frozen,
        "param_groups": recipes.describe_groups(groups),
    }


def _files(dataset, classes: list[str]) -> list[list[str]]:
    """(path, class) of every image of a dataset or Subset, so a split can be rebuilt for `edgekit eval`."""
    indices = getattr(dataset, "indices", None)
    base = getattr(dataset, "dataset", dataset)
    samples = base.samples if indices is None else [base.samples[i] for i in indices]
    names = getattr(base, "classes", classes)
    return [[os.path.abspath(path), names[target]] for path, target in samples]


def _print_summary(summary: dict[str, Any]) -> None:
    recipe = summary["recipe"]
    print(f"edgekit train {summary['model']}: {summary['train_images']} training / {summary['val_images']} validation "
          f"images, {len(summary['classes'])} classes, {summary['device']}, amp {recipe['amp']}", file=sys.stderr)
    print(f"  frozen: {', '.join(summary['frozen']) or 'nothing'}", file=sys.stderr)
    for row in summary["param_groups"]:
        print(f"  train {row['stage']:<12} lr x{row['lr_multiplier']:.4g} = {row['lr']:.3g}  ({row['params']:,} params)",
              file=sys.stderr)


def _cosine(optimizer, total: int, warmup: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _train_epoch(net, loader, optimizer, schedule, scaler, ema, loss_fn, recipe: Recipe, frozen, device, bar):
    recipes.set_train_mode(net, frozen)
    trainable = [p for group in optimizer.param_groups for p in group["params"]]
    total_loss, correct, seen = 0.0, 0, 0
    optimizer.zero_grad(set_to_none=True)
    for i, (images, labels) in enumerate(loader, start=1):
        images, labels = images.to(device), labels.to(device)
        with torch.autocast(device.type, enabled=recipe.amp):
            logits = net(images)
            loss = loss_fn(logits, labels)
        scaler.scale(loss / recipe.accumulate).backward()
        if i % recipe.accumulate == 0 or i == len(loader):
            if recipe.clip_norm > 0:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(trainable, recipe.clip_norm)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            schedule.step()
            if ema is not None:
                ema.update(net)
        total_loss += loss.item() * len(labels)
        correct += (logits.argmax(1) == labels).sum().item()
        seen += len(labels)
        bar.update(total_loss / seen, correct / seen)
    net.eval()
    return {"train_loss": round(total_loss / seen, 4), "train_top1": round(correct / seen, 4)}


@torch.no_grad()
def _score(net, loader, device, amp: bool, prefix: str) -> dict[str, float]:
    net.eval()
    loss, top1, top5, seen = 0.0, 0, 0, 0
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        with torch.autocast(device.type, enabled=amp):
            logits = net(images).float()
        loss += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
        ranked = logits.topk(min(5, logits.shape[1]), dim=1).indices
        top1 += (ranked[:, 0] == labels).sum().item()
        top5 += (ranked == labels[:, None]).any(1).sum().item()
        seen += len(labels)
    return {f"{prefix}_loss": round(loss / seen, 4), f"{prefix}_top1": round(top1 / seen, 4),
            f"{prefix}_top5": round(top5 / seen, 4)}


def _save_checkpoint(path: Path, state: dict, card, summary: dict[str, Any], best: dict[str, Any]) -> None:
    metadata = {
        "model": card.name,
        "class_names": list(card.labels),
        "num_classes": card.num_classes,
        "input_size": card.input_size,
        "recipe": summary["recipe"],
        "epoch": best["epoch"],
        "val_top1": best["val_top1"],
        "val_top5": best["val_top5"],
        "ema": best["weights"] == "ema",
        "weights_from": best["weights"],
        "start_weights": summary["weights"],
        "validation": summary["validation"],
        "frozen": summary["frozen"],
    }
    temporary = path.with_name(f".{path.name}.tmp")
    torch.save({"state_dict": state, METADATA_KEY: metadata}, temporary)
    os.replace(temporary, path)
