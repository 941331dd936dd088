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
         "onnx2tf", "ai-edge-litert", "openvino", "executorch", "torchao", "tensorrt")


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


REQUIRED = {"status": str, "model": str, "target": str, "precision": str, "artifact": dict, "card": dict,
            "contract": dict, "weights": dict, "export": dict}


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The manifest of an artifact folder, checked for the fields every reader needs.

    Raises:
        InvalidSpecError: `directory` is not a folder or holds no manifest.
        InvalidInputError: the manifest is not valid JSON or lacks what edgekit writes into every manifest.
    """
    from edgekit.errors import InvalidInputError, InvalidSpecError

    directory = Path(directory)
    path = directory / MANIFEST
    if not directory.is_dir():
        raise InvalidSpecError(f"{str(directory)!r} is not a folder; pass a folder written by 'edgekit export'")
    if not path.is_file():
        raise InvalidSpecError(f"{str(directory)!r} holds no {MANIFEST}; pass a folder written by 'edgekit export'")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"{path} is not valid JSON ({exc}); the file is damaged. Copy the artifact folder "
                                "again, or export it again") from None
    problems = [] if isinstance(manifest, dict) else ["it is not a JSON object"]
    if not problems:
        problems = [f"'{key}' is missing or not a {kind.__name__}" for key, kind in REQUIRED.items()
                    if not isinstance(manifest.get(key), kind)]
        artifact = manifest.get("artifact") or {}
        if not problems and not (isinstance(artifact.get("file"), str) and isinstance(artifact.get("sha256"), str)):
            problems.append("'artifact' lacks its file name or sha256")
        if not problems and manifest["card"].get("name") != manifest["model"]:
            problems.append(f"it names model {manifest['model']!r} but its card is {manifest['card'].get('name')!r}")
    if problems:
        raise InvalidInputError(f"{path} is not a manifest edgekit can use: {'; '.join(problems)}. Export the "
                                "artifact again")
    return manifest


def manifest_card(manifest: dict[str, Any]):
    """The model card an artifact was exported with, as its manifest records it (no PyTorch needed)."""
    from edgekit.card import ModelCard
    from edgekit.errors import InvalidInputError

    try:
        return ModelCard.from_dict(manifest["card"])
    except (TypeError, ValueError, KeyError) as exc:
        raise InvalidInputError(f"the manifest's model card is damaged ({exc}); export the artifact again") from None


def manifest_contract(manifest: dict[str, Any]):
    """The input/output contract an artifact's manifest records."""
    from edgekit.contract import Contract
    from edgekit.errors import InvalidInputError

    try:
        return Contract.from_dict(manifest["contract"])
    except (TypeError, ValueError, KeyError) as exc:
        raise InvalidInputError(f"the manifest's contract is damaged ({exc}); export the artifact again") from None


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
