"""`edgekit diagnose` on real exports: coverage, fp32 versus int8, a damaged layer named, the CLI and its errors."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgekit.calibration import bundled_images
from edgekit.diagnose import diagnose, supported_targets
from edgekit.diagnose.cli import add_parser
from edgekit.diagnose.layers import module_path
from edgekit.errors import InvalidSpecError
from edgekit.manifest import sha256_file

MODEL = "mobilenet_v2"
pytestmark = pytest.mark.xdist_group("mobilenet_v2")  # shares the exports of tests/exporters/test_targets.py
DAMAGED = "features.8.conv.1.0"  # a depthwise convolution in the middle of the network


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Four bundled photos: enough images for stable per-layer figures, few enough to stay fast."""
    folder = tmp_path_factory.mktemp("photos")
    for path in bundled_images()[:4]:
        shutil.copy(path, folder / path.name)
    return folder


def test_module_path_reads_torch_onnx_scopes() -> None:
    assert module_path("/features/features.3/conv/conv.0/conv.0.0/Conv_output_0") == "features.3.conv.0.0"
    assert module_path("/features/features.3/Add_output_0") == "features.3"
    assert module_path("/GlobalAveragePool_output_0") is None
    assert module_path("logits") is None


@pytest.mark.slow
@pytest.mark.xdist_group("mobilenet_v2")
def test_int8_covers_every_conv_and_loses_more_than_fp32(exported, photos) -> None:
    fp32 = diagnose(exported(MODEL, "onnx", weights="imagenet").directory, data=photos, threads=1)
    int8 = diagnose(exported(MODEL, "onnx-int8", weights="imagenet").directory, data=photos, threads=1)
    for report in (fp32, int8):
        assert report.images == 4
        assert report.coverage["matched"] == report.coverage["weighted"] == 53, report.unmatched_modules
        assert report.coverage["by_name"] >= 0.9 * len(report.layers)
        assert all(np.isfinite(layer.sqnr_db) for layer in report.layers)
    assert min(layer.sqnr_db for layer in fp32.layers) > 90
    assert 5 < int8.layers[-1].sqnr_db < 40  # the logits: int8 keeps the decision, not the digits
    assert max(layer.sqnr_db for layer in int8.layers[1:]) < 40
    assert all(layer.module in {m for other in int8.layers for m in other.modules} for layer in int8.worst())


@pytest.mark.slow
@pytest.mark.xdist_group("mobilenet_v2")
def test_a_damaged_conv_is_named_worst_by_the_cli(exported, photos, tmp_path, capsys) -> None:
    onnx = pytest.importorskip("onnx")
    folder = tmp_path / "damaged"
    shutil.copytree(exported(MODEL, "onnx-int8", weights="imagenet").directory, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    path = folder / manifest["artifact"]["file"]
    model = onnx.load(str(path))
    conv = next(node for node in model.graph.node if node.op_type == "Conv" and module_path(node.name) == DAMAGED)
    scale = next(init for init in model.graph.initializer if init.name == conv.input[1].replace("_DequantizeLinear_Output", "_scale"))
    values = onnx.numpy_helper.to_array(scale).copy()
    values[::2] *= 3  # every other channel's weights tripled
    scale.CopyFrom(onnx.numpy_helper.from_array(values, scale.name))
    onnx.save(model, str(path))
    manifest["artifact"].update(sha256=sha256_file(path), bytes=path.stat().st_size)
    (folder / "manifest.json").write_text(json.dumps(manifest))

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    out = tmp_path / "report"
    args = parser.parse_args(["diagnose", str(folder), "--data", str(photos), "--out", str(out), "--json", "--threads", "1"])
    assert args.handler(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["worst"][0] == DAMAGED
    assert json.loads((out / "diagnose.json").read_text())["worst"] == printed["worst"]
    assert (out / "diagnose.png").stat().st_size > 10_000


@pytest.mark.slow
@pytest.mark.xdist_group("mobilenet_v2")
def test_tflite_layers_are_paired_by_value(exported, photos) -> None:
    pytest.importorskip("ai_edge_litert")
    report = diagnose(exported(MODEL, "tflite-fp32", weights="imagenet").directory, data=photos, threads=1)
    assert report.coverage["matched"] == report.coverage["weighted"], report.unmatched_modules
    assert report.coverage["by_name"] == 0 and min(layer.sqnr_db for layer in report.layers) > 50


@pytest.mark.slow
def test_a_dead_branch_has_no_sqnr_and_the_json_stays_strict(photos, tmp_path) -> None:
    """A residual block whose projection BatchNorm has zero scale and shift outputs exactly zero: there is no ratio
    to its signal. It was ranked worst at -inf dB and written as `-Infinity`, which no strict JSON parser reads."""
    import torch

    from edgekit import export
    from edgekit.models import create_model

    dead = "features.3.conv.2"  # features.3 (24 -> 24 channels) keeps only its skip connection
    model = create_model(MODEL, weights="imagenet")
    with torch.no_grad():
        model.features[3].conv[3].weight.zero_()
        model.features[3].conv[3].bias.zero_()
    checkpoint = tmp_path / "dead-branch.pt"
    torch.save(model.state_dict(), checkpoint)
    artifact = export(MODEL, "onnx", weights=checkpoint, out=tmp_path / "out", progress=False)

    report = diagnose(artifact.directory, data=photos, threads=1)
    layer = next(layer for layer in report.layers if layer.module == dead)
    assert layer.sqnr_db is None and layer.relative_error is None and layer.added_db is None
    assert dead not in [worst.module for worst in report.worst()]
    assert any(dead in note and "no SQNR" in note for note in report.notes)
    others = [other.sqnr_db for other in report.layers if other.module != dead]
    assert all(value is not None and value > 90 for value in others)  # fp32: every live layer exact to float error
    json.loads(json.dumps(report.to_dict(), allow_nan=False))  # raises on inf or nan
    report.plot(tmp_path / "diagnose.png")
    assert (tmp_path / "diagnose.png").stat().st_size > 10_000


def test_bad_input_names_the_supported_targets(tmp_path) -> None:
    with pytest.raises(InvalidSpecError, match="not a folder"):
        diagnose(tmp_path / "absent")
    manifest = {"status": "verified", "model": MODEL, "target": "executorch", "precision": "fp32",
                "artifact": {"file": "model.pte", "sha256": "0" * 64}, "card": {"name": MODEL}, "contract": {},
                "weights": {}, "export": {}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InvalidSpecError, match="supported targets: .*onnx-int8.*tflite-int8") as error:
        diagnose(tmp_path)
    assert error.value.exit_code == 2 and "openvino" not in supported_targets()
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["diagnose", str(tmp_path), "--out", str(tmp_path / "inside")])
    with pytest.raises(InvalidSpecError, match="inside the artifact folder"):
        args.handler(args)


def test_an_openvino_int8_folder_points_to_the_file_it_was_converted_from(tmp_path) -> None:
    calibration = {"source": "edgekit bundled photos", "sha256": "1" * 64}
    manifest = {"status": "verified", "model": MODEL, "target": "openvino-int8", "precision": "int8",
                "artifact": {"file": "model.int8.xml", "sha256": "0" * 64}, "card": {"name": MODEL}, "contract": {},
                "weights": {"source": "imagenet"}, "export": {"batch": 1}, "calibration": calibration}
    ir = tmp_path / f"{MODEL}-openvino-int8"
    ir.mkdir()
    (ir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InvalidSpecError, match="converted from onnx-int8's model.int8.onnx.*export onnx-int8 with "
                                               "the same weights and calibration") as error:
        diagnose(ir)
    assert error.value.exit_code == 2
    sibling = tmp_path / f"{MODEL}-onnx-int8"
    sibling.mkdir()
    other = dict(manifest, target="onnx-int8", artifact={"file": "model.int8.onnx", "sha256": "0" * 64})
    (sibling / "manifest.json").write_text(json.dumps(dict(other, calibration={"sha256": "2" * 64})))
    with pytest.raises(InvalidSpecError, match="export onnx-int8"):
        diagnose(ir)  # calibrated on other images: not the same file
    (sibling / "manifest.json").write_text(json.dumps(other))
    with pytest.raises(InvalidSpecError, match=f"run: edgekit diagnose {sibling}$"):
        diagnose(ir)
