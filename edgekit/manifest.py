"""The manifest beside every artifact, and atomic placement of the artifact folder."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import shutil
from pathlib import Path
from typing import Any

from edgekit import __version__
from edgekit.backends import version

MANIFEST = "manifest.json"
TOOLS = ("torch", "torchvision", "numpy", "onnx", "onnxruntime", "onnxsim", "onnxscript", "tensorflow", "tf-keras",
         "onnx2tf", "ai-edge-litert", "tensorrt")


def tool_versions() -> dict[str, str | None]:
    """Versions of Python, edgekit and every converter or runtime edgekit may use (None if absent)."""
    versions: dict[str, str | None] = {"python": platform.python_version(), "edgekit": __version__}
    versions.update({name: version(name) for name in TOOLS})
    return versions


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Writes JSON through a temporary file and a rename, so a reader never sees half a file."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(temporary, path)


def read_manifest(directory: str | Path) -> dict[str, Any]:
    from edgekit.errors import InvalidSpecError

    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise InvalidSpecError(f"{str(directory)!r} holds no {MANIFEST}; pass a folder written by 'edgekit export'")
    return json.loads(path.read_text())


def manifest_card(manifest: dict[str, Any]):
    """The model card an artifact was exported with, as its manifest records it (no PyTorch needed)."""
    from edgekit.card import ModelCard

    return ModelCard.from_dict(manifest["card"])


def place(work: Path, final: Path, force: bool) -> None:
    """Moves a finished folder to `final`; an existing one is replaced only with `force`, never damaged.

    The old folder is renamed aside first and deleted only once the new one is in place.
    """
    from edgekit.errors import InvalidSpecError

    if not final.exists():
        os.replace(work, final)
        return
    if not force:
        raise InvalidSpecError(f"{final} already exists; pass --force to replace it")
    aside = final.with_name(f".{final.name}.old-{os.getpid()}")
    os.replace(final, aside)
    try:
        os.replace(work, final)
    except BaseException:
        os.replace(aside, final)
        raise
    shutil.rmtree(aside, ignore_errors=True)
