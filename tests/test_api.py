"""The Python API: every public name resolves, `dir()` lists it, and `import edgekit` stays light."""

from __future__ import annotations

import subprocess
import sys

import edgekit


def test_every_public_name_resolves_and_is_listed() -> None:
    for name in edgekit.__all__:
        assert getattr(edgekit, name) is not None, name
    assert set(edgekit.__all__) <= set(dir(edgekit))  # the lazy names too, for completion in editors and notebooks


def test_import_edgekit_loads_no_backend() -> None:
    backends = ("torch", "tensorflow", "onnxruntime", "openvino", "executorch")
    code = f"import sys, edgekit; print(sorted(m for m in {backends!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
