"""Tamper evidence: an artifact's files must still be the bytes its manifest records.

`check_files` runs before `predict`, `verify` and `build-engine` load anything. It proves that
nothing damaged the files in transit; it cannot prove who wrote the manifest, since whoever edits
a file can edit the manifest's sha256 too. That is what signing (`edgekit.integrity.signing`) adds.
No PyTorch here: devices run this.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekit.errors import IntegrityError
from edgekit.manifest import sha256_file


def artifact_files(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The manifest's records ({file, bytes, sha256}) of the artifact file and its companions."""
    artifact = manifest["artifact"]
    return [artifact, *artifact.get("companions", [])]


def check_files(directory: str | Path, manifest: dict[str, Any]) -> None:
    """Refuses an artifact whose file or companion is missing, or whose bytes differ from the manifest's sha256.

    Raises:
        IntegrityError: naming the file, both sizes or hashes, and what to do.
    """
    directory = Path(directory)
    for record in artifact_files(manifest):
        path = directory / record["file"]
        if not path.is_file():
            raise IntegrityError(f"{path} is missing; its manifest lists it as part of the artifact. Copy the whole "
                                 "artifact folder again")
        size = path.stat().st_size
        if record.get("bytes") is not None and size != record["bytes"]:
            raise IntegrityError(f"{path} changed since export: it has {size} bytes, its manifest records "
                                 f"{record['bytes']} (truncated or replaced in transit?). Copy the artifact folder "
                                 "again or export it again; refusing to load it")
        actual = sha256_file(path)
        if actual != record["sha256"]:
            raise IntegrityError(f"{path} changed since export: sha256 {actual}, its manifest records "
                                 f"{record['sha256']}. Copy the artifact folder again or export it again; refusing "
                                 "to load it")


def check_artifact(directory: str | Path, manifest: dict[str, Any], require_signature: str | Path | None = None) -> None:
    """What `predict` and `verify` check before loading: the folder's signature when one is required, then the files.

    Raises:
        IntegrityError: the signature is missing or does not verify, or a file changed since export.
    """
    if require_signature is not None:
        from edgekit.integrity.signing import verify_signature

        verify_signature(directory, require_signature)
    check_files(directory, manifest)
