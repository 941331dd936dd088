"""The one error hierarchy of edgekit, and the exit code each error maps to."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class EdgekitError(Exception):
    """Base class of every error edgekit raises on purpose."""

    exit_code = 1


class UsageError(EdgekitError):
    """The caller asked for something that cannot be: a bad option, name or combination."""

    exit_code = 2


class UnknownModelError(UsageError):
    """No model is registered under the requested name."""


class UnknownTargetError(UsageError):
    """No export target is registered under the requested name."""


class InvalidSpecError(UsageError):
    """Options that conflict or are out of range."""


class WeightsError(UsageError):
    """Weights that cannot be found, verified or loaded into the model."""


class EngineMismatchError(UsageError):
    """A TensorRT engine built for another GPU or TensorRT version than the one here."""


class InvalidInputError(UsageError):
    """An input file that cannot be used: an unreadable image, a non-finite array, a corrupt manifest."""


class IntegrityError(UsageError):
    """An artifact whose bytes no longer match its manifest, or whose signature does not verify."""


class ParityError(EdgekitError):
    """An artifact does not compute what the reference model computes. `artifact` is the failing Artifact, kept for
    inspection, where one was written (None otherwise)."""

    exit_code = 3
    artifact = None


class BudgetNotMetError(ParityError):
    """No candidate of a `--keep-float auto` search meets `--max-drop` on the user's images."""


class MissingBackendError(EdgekitError):
    """An optional backend (ONNX Runtime, TensorFlow, TensorRT...) is not installed."""

    exit_code = 4


class ExportError(EdgekitError):
    """A converter failed, crashed or timed out, or the disk filled."""

    exit_code = 1


class ExportBusyError(ExportError):
    """Another live export is writing the same artifact."""


class ExportFailures(EdgekitError):
    """Some targets of a multi-target export failed; the others were written and verified.

    `artifacts` maps each finished target to its Artifact, `errors` each failed target to its error,
    and the exit code is the highest of the failed targets' codes.
    """

    def __init__(self, message: str, artifacts: dict, errors: dict) -> None:
        super().__init__(message)
        self.artifacts = artifacts
        self.errors = errors
        self.exit_code = max(error.exit_code for error in errors.values())


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Returns a ' Did you mean ...?' suffix for a mistyped name, or an empty string."""
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    if not close:
        return ""
    return " Did you mean " + " or ".join(repr(c) for c in close) + "?"
