"""What a run shows and leaves behind: a progress bar per epoch, the curves and the confusion matrix as PNGs."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

MAX_FIGURE_INCHES = 24.0  # 2640 pixels a side at 110 dpi; a 1000-class matrix at 0.6 inch a class ran out of memory
MAX_NAMED = 80  # classes whose names fit along an axis


def check_backends(progress: bool) -> None:
    """Refuses to start a run whose bars or plots could not be drawn at its end, naming the extra."""
    import importlib.util

    from edgekit.errors import MissingBackendError

    wanted = ["torchvision", "matplotlib"] + (["tqdm"] if progress else [])
    missing = [name for name in wanted if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingBackendError(f"edgekit train needs {', '.join(missing)}, not installed. "
                                  "Install it with: pip install 'edgekit[train]'")


class EpochBar:
    """One tqdm bar per epoch: batches done, running loss and accuracy, time left; closed with the epoch's scores."""

    def __init__(self, epoch: int, epochs: int, batches: int, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=batches, desc=f"epoch {epoch}/{epochs}", unit="batch", file=sys.stderr,
                            dynamic_ncols=True, leave=True)

    def update(self, loss: float, accuracy: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.3f}", acc=f"{accuracy:.1%}", refresh=False)
            self.bar.update(1)

    def close(self, row: dict[str, Any]) -> None:
        if self.bar is None:
            return
        scores = {"loss": f"{row['train_loss']:.3f}", "acc": f"{row['train_top1']:.1%}",
                  "val": f"{row['val_top1']:.1%}"}
        if "ema_val_top1" in row:
            scores["ema_val"] = f"{row['ema_val_top1']:.1%}"
        self.bar.set_postfix(scores, refresh=True)
        self.bar.close()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: Path) -> None:
    temporary = path.with_name(f".{path.stem}.tmp{path.suffix}")
    figure.savefig(temporary, dpi=110)
    os.replace(temporary, path)


def plot_curves(history: list[dict[str, Any]], path: Path, title: str) -> None:
    """Loss and top-1 per epoch, training and validation (and EMA validation when present)."""
    plt = _pyplot()
    epochs = [row["epoch"] for row in history]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("train_loss", "train (smoothed labels)"), ("val_loss", "val"), ("ema_val_loss", "val (EMA)")):
        if key in history[0]:
            left.plot(epochs, [row[key] for row in history], marker="o", label=label)
    for key, label in (("train_top1", "train"), ("val_top1", "val"), ("ema_val_top1", "val (EMA)")):
        if key in history[0]:
            right.plot(epochs, [row[key] for row in history], marker="o", label=label)
    left.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    right.set(xlabel="epoch", ylabel="top-1", title="accuracy", ylim=(0, 1))
    from matplotlib.ticker import MaxNLocator

    for axis in (left, right):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    _save(figure, path)
    plt.close(figure)


def plot_confusion(matrix: list[list[int]], classes: list[str], path: Path, title: str) -> None:
    """The confusion matrix, true classes as rows, with counts in the cells (class names up to `MAX_NAMED` classes)."""
    plt = _pyplot()
    size = min(max(4.0, 0.6 * len(classes) + 2), MAX_FIGURE_INCHES)
    figure, axis = plt.subplots(figsize=(size + 1, size))
    image = axis.imshow(matrix, cmap="Blues")
    if len(classes) <= MAX_NAMED:
        axis.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
        axis.set_yticks(range(len(classes)), classes)
    axis.set(xlabel="predicted", ylabel="true", title=title)
    top = max(max(row) for row in matrix) or 1
    if len(classes) <= 30:
        for i, row in enumerate(matrix):
            for j, count in enumerate(row):
                if count:
                    axis.text(j, i, str(count), ha="center", va="center",
                              color="white" if count > top / 2 else "black", fontsize=8)
    figure.colorbar(image, ax=axis, fraction=0.046)
    figure.tight_layout()
    _save(figure, path)
    plt.close(figure)
