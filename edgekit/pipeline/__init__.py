"""The export pipeline: plan the steps of one or several targets, run each once in a child process,
verify it, and move each finished artifact into place atomically."""

from __future__ import annotations

from edgekit.pipeline.artifact import Artifact
from edgekit.pipeline.export import export

__all__ = ["Artifact", "export"]
