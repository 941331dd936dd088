"""Artifacts run in the standard clients, without edgekit, and agree with `edgekit predict`.

One export (onnx and three TFLite targets, shared steps) feeds every test. Each client is a
script in `scripts/` run in a child process where `import edgekit` fails: MediaPipe's
ImageClassifier and OpenCV DNN read only the artifact (and, for OpenCV, the manifest), the
ONNX Runtime client only the ONNX file's metadata_props, the LiteRT client only manifest.json.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).parent / "scripts"
TARGETS = ["onnx", "tflite-fp32", "tflite-fp16", "tflite-int8-dynamic", "tflite-int8"]
MEDIAPIPE_TARGETS = ["tflite-fp32", "tflite-fp16", "tflite-int8-dynamic", "tflite-int8"]
# Whichever of these tests and test_targets' runs first on the worker exports all their targets in one run.
SHARED_EXPORT = "test_every_target_verifies_mobilenet_v2"

# The artifacts are the ones tests/exporters/test_targets.py exports (same model, weights and options), made
# once per worker by the session fixture `exported`: the group keeps them on one worker.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("mobilenet_v2")]


def absent(module: str) -> bool:
    return importlib.util.find_spec(module) is None


def need(module: str, package: str) -> None:
    if absent(module):
        pytest.skip(f"{package} is not installed (pip install -c constraints.txt {package}); this client cannot be tested")


@pytest.fixture(scope="module")
def artifacts(exported) -> dict:
    """The four artifacts (uint8 io for tflite-int8, the default); without mediapipe (it writes the TFLite metadata)
    only the onnx one."""
    from edgekit.errors import ParityError

    found = {}
    for target in ["onnx"] if absent("mediapipe") else TARGETS:
        try:
            found[target] = exported("mobilenet_v2", target, weights="imagenet", share_with=SHARED_EXPORT,
                                     together=tuple(TARGETS))
        except ParityError as error:
            # Parity with PyTorch is tests/exporters' to judge; these tests ask whether each client agrees
            # with edgekit on the same file, which a parity-failed artifact (kept whole) can still answer.
            found[target] = error.artifact
    return found


@pytest.fixture
def tflite(artifacts) -> dict:
    need("mediapipe", "mediapipe")
    return artifacts


@pytest.fixture(scope="module")
def photos() -> list[str]:
    from edgekit.calibration import bundled_images

    return [str(p) for p in bundled_images()]


@pytest.fixture(scope="module")
def predicted(artifacts, photos) -> dict:
    """edgekit predict's top-5 for every photo, per target."""
    from edgekit.prediction import predict

    return {target: predict(artifact.directory, photos, topk=5) for target, artifact in artifacts.items()}


def run_client(script: str, *args: str) -> list[dict]:
    result = subprocess.run([sys.executable, str(SCRIPTS / script), *args], capture_output=True, text=True,
                            timeout=600, cwd=SCRIPTS)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def disagreements(client: list[dict], edgekit_rows: list[dict]) -> list[str]:
    """Photos whose top-1 (index and name) differ; an exact tie counts as agreement."""
    wrong = []
    for mine, theirs in zip(client, edgekit_rows, strict=True):
        top = theirs["topk"]
        tied = {c["index"] for c in top if c["probability"] == top[0]["probability"]}
        name = {c["index"]: c["name"] for c in top}
        if not (tied & {mine["index"], *mine["tied"]}) or (mine["index"] in name and mine["name"] != name[mine["index"]]):
            wrong.append(f"{Path(mine['image']).name}: client {mine['index']} {mine['name']!r}, "
                         f"edgekit {top[0]['index']} {top[0]['name']!r}")
    return wrong


def test_labels_file_matches_the_class_names(artifacts) -> None:
    from edgekit.card import class_names

    for artifact in artifacts.values():
        lines = (artifact.directory / artifact.manifest["labels"]).read_text(encoding="utf-8").splitlines()
        assert artifact.manifest["labels"] == "labels.txt" and lines == list(class_names("imagenet-1k"))


def test_tflite_metadata_is_embedded_and_the_files_verified(tflite) -> None:
    import edgekit
    from edgekit.manifest import sha256_file

    files = [tflite[target].file for target in MEDIAPIPE_TARGETS]
    for artifact, metadata in zip([tflite[t] for t in MEDIAPIPE_TARGETS], run_client("metadata_client.py", *map(str, files))):
        assert artifact.manifest["artifact"]["sha256"] == sha256_file(artifact.file)
        final = artifact.manifest["parity"]["steps"][-1]
        assert final["artifact"] == artifact.file.name  # verified as it ships, metadata included
        if artifact.manifest["precision"] != "int8":  # int8 parity is judged in tests/exporters
            assert artifact.status == "verified"
        assert artifact.manifest["contract"]["normalization"] == "graph"
        assert (metadata["name"], metadata["version"], metadata["author"]) == (
            "mobilenet_v2", f"edgekit {edgekit.__version__}", "edgekit")
        assert (metadata["mean"], metadata["std"], metadata["min_parser_version"]) == ([0.0], [1.0], "1.0.0")
        assert metadata["output_files"] == [["labels.txt", metadata["labels_type"]]] and metadata["packed"] == ["labels.txt"]
        assert metadata["labels"] == (artifact.directory / "labels.txt").read_text().splitlines()


def test_tflite_int8_uint8_input_holds_pixels_exactly(tflite) -> None:
    contract = tflite["tflite-int8"].manifest["contract"]
    assert (contract["input_dtype"], contract["output_dtype"]) == ("uint8", "uint8")
    assert (contract["input_quant"]["scale"], contract["input_quant"]["zero_point"]) == (1.0, 0)


def test_onnx_metadata_carries_the_contract(artifacts) -> None:
    import onnx

    props = {p.key: p.value for p in onnx.load(str(artifacts["onnx"].file)).metadata_props}
    assert not [key for key in props if key.startswith("onnxsim.")]
    card = artifacts["onnx"].manifest["card"]
    assert json.loads(props["classes"])[:2] == ["tench", "goldfish"] and props["num_classes"] == "1000"
    assert (json.loads(props["mean"]), json.loads(props["std"])) == (list(card["mean"]), list(card["std"]))
    assert (props["input_name"], props["output_name"], props["output_kind"]) == ("input", "logits", "logits")
    assert (props["layout"], props["channel_order"], props["interpolation"], props["resize_size"]) == (
        "NCHW", "RGB", "bilinear", "256")
    assert json.loads(props["input_shape"]) == [1, 3, 224, 224]


@pytest.mark.parametrize("target", MEDIAPIPE_TARGETS)
def test_mediapipe_image_classifier(tflite, photos, predicted, target: str) -> None:
    results = run_client("mediapipe_client.py", str(tflite[target].file), "crop", "256", "224", *photos)
    assert disagreements(results, predicted[target]) == []


def test_opencv_dnn_on_onnx(artifacts, photos, predicted) -> None:
    need("cv2", "opencv-python-headless")
    results = run_client("opencv_client.py", str(artifacts["onnx"].directory), *photos)
    assert disagreements(results, predicted["onnx"]) == []


def test_onnxruntime_from_embedded_metadata_only(artifacts, photos, predicted) -> None:
    results = run_client("ort_client.py", str(artifacts["onnx"].file), *photos)
    assert disagreements(results, predicted["onnx"]) == []


@pytest.mark.parametrize("target", MEDIAPIPE_TARGETS)
def test_litert_from_manifest_only(tflite, photos, predicted, target: str) -> None:
    need("ai_edge_litert", "ai-edge-litert")
    results = run_client("litert_client.py", str(tflite[target].directory), *photos)
    assert disagreements(results, predicted[target]) == []
