"""An export's result folder: the artifact, its labels and manifest, progress lines, and the atomic finish.

Shared by `edgekit export` and `edgekit build-engine`, and free of PyTorch, because build-engine
runs on devices that have none.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.card import ModelCard
from edgekit.contract import Contract, Quantization
from edgekit.errors import ParityError
from edgekit.manifest import MANIFEST, place, write_json
from edgekit.parity import ParityReport

LABELS = "labels.txt"


@dataclass
class Artifact:
    """An exported artifact: its folder, its file, its manifest and its parity report."""

    directory: Path
    file: Path
    manifest: dict[str, Any]
    report: ParityReport | None = None

    @property
    def status(self) -> str:
        return self.manifest["status"]


@dataclass
class Progress:
    """Prints each step with its time to stderr."""

    enabled: bool
    total: int
    started: float = field(default_factory=time.perf_counter)

    def say(self, text: str) -> None:
        if self.enabled:
            print(text, file=sys.stderr, flush=True)

    def step(self, index: int, name: str) -> None:
        self.say(f"  [{index}/{self.total}] {name} ...")

    def done(self, text: str) -> None:
        self.say(f"        {text}")


def write_labels(folder: Path, card: ModelCard) -> str:
    """Writes `labels.txt`, one class name per line in output order; returns its name."""
    (folder / LABELS).write_text("".join(f"{name}\n" for name in card.class_names), encoding="utf-8")
    return LABELS


def finish(work: Path, final: Path, manifest: dict[str, Any], report: ParityReport | None, force: bool,
           progress: Progress) -> Artifact:
    """Leaves only the artifact, its companions, labels and manifest, moves them into place, raises on parity failure."""
    status = manifest["status"]
    keep = {manifest["artifact"]["file"], MANIFEST, manifest.get("labels")}
    keep |= {companion["file"] for companion in manifest["artifact"].get("companions", [])}
    write_json(work / MANIFEST, manifest)
    for path in work.iterdir():
        if path.name not in keep:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    destination = final if status != "parity-failed" else final.with_name(final.name + ".parity-failed")
    place(work, destination, force=force or status == "parity-failed")
    artifact = Artifact(destination, destination / manifest["artifact"]["file"], manifest, report)
    progress.say(f"{status}: {artifact.file}  ({time.perf_counter() - progress.started:.1f}s)")
    if status == "parity-failed":
        error = ParityError(f"{report.describe_failure()}. The failing artifact is kept for inspection in {destination}")
        error.artifact = artifact
        raise error
    return artifact


def contract_with(base: Contract, changes: dict[str, Any]) -> Contract:
    changes = dict(changes)
    for key in ("input_quant", "output_quant"):
        if isinstance(changes.get(key), dict):
            changes[key] = Quantization(**changes[key])
    return base.replace(**changes)


def keep_log(log: Path, final: Path) -> Path | None:
    """Copies a failed step's log beside where the artifact would have been; returns the copy, if one was made."""
    if not log.is_file():
        return None
    kept = final.with_name(final.name + ".export-failed.log")
    try:
        shutil.copy(log, kept)
    except OSError:  # a full disk: the error itself still says what happened
        return None
    return kept
