"""The installed `edgekit` command: listing, errors and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

from edgekit.models import list_models


def edgekit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgekit.cli", *args], capture_output=True, text=True, timeout=300)


def test_help_lists_commands() -> None:
    result = edgekit("--help")
    assert result.returncode == 0
    for command in ("models", "classify"):
        assert command in result.stdout


def test_models_json() -> None:
    result = edgekit("models", "--json")
    assert result.returncode == 0
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert list(rows) == list_models()
    assert rows["mobilenet_v2"]["imagenet_weights"] == "installed"
    assert rows["effnet_b0"]["imagenet_weights"] == "none"
    assert rows["effnet_lite3"]["verification_init"] == "effnet_lite2"
    assert rows["effnet_b0"]["verification_init"] == "effnet_lite0"
    assert rows["effnet_b1"]["verification_init"] is None
    assert rows["effnet_b0"]["aliases"] == ["efficientnet_b0"]
    assert (rows["shufflenet_v2_x1_0"]["params_m"], rows["shufflenet_v2_x1_0"]["input_size"]) == (2.28, 224)


def test_unknown_model_exits_2_with_suggestion() -> None:
    result = edgekit("classify", "mobilenetv2", "x.jpg")
    assert result.returncode == 2
    assert "unknown model 'mobilenetv2'. Did you mean 'mobilenet_v2'" in result.stderr


def test_no_offline_weights_exits_2(tmp_path) -> None:
    image = tmp_path / "a.png"
    from PIL import Image

    Image.new("RGB", (64, 64)).save(image)
    result = edgekit("classify", "effnet_b1", str(image))
    assert result.returncode == 2
    assert "no offline source" in result.stderr


def test_a_repeated_target_option_adds_targets() -> None:
    """`--target bogus --target onnx` used to export onnx alone: argparse kept the last one and dropped the rest."""
    for command in (["export", "shufflenet_v2_cifar_x0_5", "--target"],
                    ["bench", "shufflenet_v2_cifar_x0_5", "--targets"]):
        result = edgekit(*command, "bogus", *command[2:], "onnx")
        assert result.returncode == 2, result.stderr
        assert "unknown target 'bogus'" in result.stderr
