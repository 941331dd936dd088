"""Signing artifact folders with OpenSSF model-signing, offline, with an elliptic-curve key pair.

`sign` hashes every file of the folder (artifact, companions, labels, manifest) and writes a
Sigstore bundle, `edgekit.sig`, into the same folder. `verify_signature` refuses a folder whose
files, including the manifest, are not the signed ones, or that holds a file that was not signed.
Keys are PEM files: `openssl ecparam -name prime256v1 -genkey -noout -out key.pem` and
`openssl ec -in key.pem -pubout -out key.pub`.
"""

from __future__ import annotations

import re
from pathlib import Path

from edgekit.backends import require
from edgekit.errors import IntegrityError, InvalidSpecError

SIGNATURE = "edgekit.sig"


def _hashing(model_signing, *ignored: str):
    return model_signing.hashing.Config().set_ignored_paths(paths=[SIGNATURE, *ignored], ignore_git_paths=False)


def sign(directory: str | Path, key: str | Path, password: str | None = None) -> Path:
    """Signs an artifact folder with a private key; returns the signature file.

    Raises:
        InvalidSpecError: the folder or key is missing, or the key cannot be used.
        MissingBackendError: model-signing is not installed (extra `signing`).
    """
    from edgekit.manifest import read_manifest

    directory, key = Path(directory), Path(key)
    read_manifest(directory)
    if not key.is_file():
        raise InvalidSpecError(f"private key {key} does not exist")
    model_signing = require("model_signing", extra="signing")
    signature = directory / SIGNATURE
    temporary = directory / f".{SIGNATURE}.tmp"
    try:
        config = model_signing.signing.Config().use_elliptic_key_signer(private_key=key, password=password)
        config.set_hashing_config(_hashing(model_signing, temporary.name))
        config.sign(directory, temporary)
    except (ValueError, TypeError) as exc:
        temporary.unlink(missing_ok=True)
        raise InvalidSpecError(f"cannot sign with {key}: {exc}. It must be a PEM elliptic-curve private key") from None
    temporary.replace(signature)
    return signature


def _readable(message: str) -> str:
    """model-signing's mismatch message without the raw digests: which files changed, appeared or vanished."""
    changed = re.findall(r"Hash mismatch for \\?'([^'\\]+)", message)
    parts = [f"{', '.join(changed)} changed since signing"] if changed else []
    for kind in ("Extra files", "Missing files"):
        found = re.search(kind + r" found in model '[^']*': ([^\]'\"]+)|" + kind + r" in model '[^']*': ([^\]'\"]+)", message)
        if found:
            parts.append(f"{'added' if kind == 'Extra files' else 'removed'} since signing: {found.group(1) or found.group(2)}")
    if "Key mismatch" in message:
        parts.append("it was signed with another key")
    return "; ".join(parts) or message


def verify_signature(directory: str | Path, public_key: str | Path) -> None:
    """Checks that the folder's files are exactly the ones signed by the holder of `public_key`.

    Raises:
        IntegrityError: no signature, a signature by another key, or files changed, added or removed.
        InvalidSpecError: the public key is missing or unusable.
    """
    directory, public_key = Path(directory), Path(public_key)
    if not public_key.is_file():
        raise InvalidSpecError(f"public key {public_key} does not exist")
    signature = directory / SIGNATURE
    if not signature.is_file():
        raise IntegrityError(f"{directory} is not signed (no {SIGNATURE}), and a signature was required; sign it with "
                             "'edgekit sign' where it was exported")
    model_signing = require("model_signing", extra="signing")
    try:
        config = model_signing.verifying.Config().use_elliptic_key_verifier(public_key=public_key)
        config.set_hashing_config(_hashing(model_signing)).verify(directory, signature)
    except ValueError as exc:
        raise IntegrityError(f"the signature of {directory} does not verify with {public_key}: {_readable(str(exc))}; "
                             "refusing to load it") from None
    except Exception as exc:  # malformed bundles raise parser-specific types
        raise IntegrityError(f"the signature {signature} cannot be read ({type(exc).__name__}: {exc}); refusing "
                             "to load the artifact") from None
