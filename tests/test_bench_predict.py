"""`edgekit bench` measures real runs and writes its reports; `edgekit predict` runs an artifact on images."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgekit.bench import _label_levels, bench
from edgekit.calibration import demo_image
from edgekit.errors import InvalidInputError, InvalidSpecError
from edgekit.classify import CHUNK, classify_images
from edgekit.prediction import predict


@pytest.mark.slow
def test_bench_writes_table_json_and_plot(tmp_path: Path) -> None:
    result = bench("shufflenet_v2_cifar_x0_5", "onnx,torch-int8-dynamic,torchscript-mobile", runs=5, warmup=2,
                   out=tmp_path, progress=False)
    rows = {r["target"]: r for r in result.rows}
    assert list(rows) == ["pytorch (eager fp32)", "onnx", "torch-int8-dynamic", "torchscript-mobile"]
    assert result.matmul_gflops > 1
    for name in ("pytorch (eager fp32)", "onnx", "torch-int8-dynamic"):
        assert 0 < rows[name]["median_ms"] <= rows[name]["p90_ms"]
        assert rows[name]["peak_rss_mb"] > 50 and rows[name]["fraction_of_floor"] > 0
    assert rows["onnx"]["status"] == "ok" and rows["onnx"]["bytes"] > 100_000
    # the 5 runs are timed in 3 rounds (2 + 2 + 1 runs), each in a fresh process, and the row pools them
    assert rows["onnx"]["runs"] == 5 and rows["onnx"]["rounds"] == 3 and len(rows["onnx"]["round_medians_ms"]) == 3
    assert min(rows["onnx"]["round_medians_ms"]) <= rows["onnx"]["median_ms"] <= max(rows["onnx"]["round_medians_ms"])
    assert rows["pytorch (eager fp32)"]["throughput_batch8"] > 0 and rows["onnx"]["throughput_batch8"] is None
    if rows["torchscript-mobile"]["status"] == "unavailable":
        assert "XNNPACK" in rows["torchscript-mobile"]["reason"]
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert [r["target"] for r in saved["rows"]] == list(rows)
    assert "| onnx | ok |" in (tmp_path / "bench.md").read_text()
    assert (tmp_path / "bench.png").read_bytes()[:4] == b"\x89PNG"
    again = bench("shufflenet_v2_cifar_x0_5", "onnx", runs=3, warmup=1, out=tmp_path, progress=False)
    assert again.rows[1]["artifact"] == rows["onnx"]["artifact"]  # reused, not exported again
    (Path(rows["onnx"]["artifact"]) / "model.onnx").write_bytes(b"changed since its export")
    fresh = bench("shufflenet_v2_cifar_x0_5", "onnx", runs=3, warmup=1, out=tmp_path, progress=False)
    assert fresh.rows[1]["status"] == "ok" and fresh.rows[1]["median_ms"] > 0  # exported again, not measured as is


def test_plot_labels_at_one_height_never_overlap() -> None:
    points = [(1.40, 100.0, {"target": "onnx"}), (1.58, 100.0, {"target": "tflite-fp16"}),
              (1.63, 100.0, {"target": "tflite-fp32"}), (6.4, 100.0, {"target": "torchscript"}),
              (1.60, 82.0, {"target": "tflite-int8"}), (1.45, 99.5, {"target": "onnx-int8"})]
    assert _label_levels(points, low=0.0, high=2.5) == [0, 0, 1, 0, 0, 2]


@pytest.mark.slow
@pytest.mark.xdist_group("mobilenet_v2")
def test_predict_runs_an_int8_artifact(exported, imagenet_sample: Path, tmp_path: Path) -> None:
    artifact = exported("mobilenet_v2", "tflite-int8", weights="imagenet")
    tench = imagenet_sample / "n01440764_tench.JPEG"
    results = predict(artifact.directory, [tench, demo_image()], topk=3)
    assert results[0]["topk"][0]["name"] == "tench" and results[0]["topk"][0]["probability"] > 0.5
    assert results[1]["topk"][0]["name"] in ("Egyptian cat", "tabby", "tiger cat")
    assert results[0]["artifact_status"] == "verified"
    with pytest.raises(InvalidSpecError, match="not found"):
        predict(artifact.directory, [tench.with_name("absent.jpg")])
    (tmp_path / "photos" / "fish").mkdir(parents=True)
    (tmp_path / "photos" / "fish" / tench.name).symlink_to(tench)
    (tmp_path / "photos" / "cat.jpg").symlink_to(demo_image())
    (tmp_path / "photos" / "notes.txt").write_text("not an image")
    in_folder = predict(artifact.directory, str(tmp_path / "photos"), topk=3)  # one path need not be in a list
    assert [Path(r["image"]).name for r in in_folder] == ["cat.jpg", tench.name]  # sorted by path, subfolders too
    assert [r["topk"] for r in in_folder] == [results[1]["topk"], results[0]["topk"]]
    reference = classify_images("mobilenet_v2", [tmp_path / "photos"], topk=1)  # classify takes folders too
    assert [Path(r["image"]).name for r in reference] == ["cat.jpg", tench.name]
    assert reference[1]["topk"][0]["name"] == "tench"
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidSpecError, match="no images .* in folder"):
        predict(artifact.directory, [tench, tmp_path / "empty"])
    many = tmp_path / "many"  # more images than one chunk, and an unreadable one in the second chunk
    many.mkdir()
    photos = sorted(imagenet_sample.glob("*.JPEG"))[:CHUNK + 5]
    for photo in photos:
        (many / photo.name).symlink_to(photo)
    chunked = predict(artifact.directory, [many], topk=1)
    assert [Path(r["image"]).name for r in chunked] == [photo.name for photo in photos]
    assert [r["topk"] for r in chunked[CHUNK - 1:CHUNK + 1]] == [r["topk"] for r in predict(
        artifact.directory, photos[CHUNK - 1:CHUNK + 1], topk=1)]
    (many / "zz_cut_off.jpg").write_bytes(demo_image().read_bytes()[:600])
    with pytest.raises(InvalidInputError, match=f"1 of {CHUNK + 6} image files cannot be read:\n  .*zz_cut_off"):
        predict(artifact.directory, [many])


def test_summary_names_the_fastest_verified_and_the_fastest_within_the_int8_bar() -> None:
    from edgekit.bench import BenchResult, summary

    rows = [{"target": "pytorch (eager fp32)", "status": "reference", "median_ms": 12.0, "top1_agreement": 1.0},
            {"target": "onnx", "status": "ok", "precision": "fp32", "median_ms": 4.0, "top1_agreement": 1.0},
            {"target": "tflite-fp32", "status": "ok", "precision": "fp32", "median_ms": 3.0, "top1_agreement": 1.0},
            {"target": "onnx-int8-dynamic", "status": "ok", "precision": "int8-dynamic", "median_ms": 1.0,
             "top1_agreement": 0.92},
            {"target": "tflite-int8", "status": "ok", "precision": "int8", "median_ms": 1.5, "top1_agreement": 0.97},
            {"target": "onnx-int8", "status": "parity-failed", "precision": "int8", "median_ms": 0.5,
             "top1_agreement": 0.4},
            {"target": "openvino-int8", "status": "ok", "precision": "int8", "median_ms": 1.2, "top1_agreement": 1.0,
             "top1_agreement_all": 0.93, "own_photos": True}]  # decisive-only 100%, but 93% of the user's photos
    line = summary(BenchResult("mobilenet_v2", 2, 100.0, rows=rows))
    assert line.startswith("mobilenet_v2: fastest verified: onnx-int8-dynamic 1.00 ms (12.0x eager, 3.00x tflite-fp32)")
    assert "(the int8 bar): tflite-int8 1.50 ms (8.0x eager, 2.00x tflite-fp32)" in line
    assert line.endswith("best fp32 artifact: tflite-fp32 3.00 ms")



def test_speedup_compares_rows_round_by_round() -> None:
    """Round medians of one `edgekit bench shufflenet_v2_x1_0 --targets onnx,onnx-int8 --runs 300 --rounds 10` on a
    host that ran whole stretches 1.6-1.9x slower: the pooled medians (2.97 and 2.41 ms) fell on different sides."""
    from edgekit.bench import speedup

    onnx = {"median_ms": 2.97, "round_medians_ms": [5.25, 5.47, 2.78, 2.99, 5.44, 5.26, 2.87, 2.81, 2.77, 2.92]}
    int8 = {"median_ms": 2.41, "round_medians_ms": [2.74, 2.77, 1.84, 1.85, 3.07, 2.74, 3.25, 1.83, 1.8, 1.78]}
    assert speedup(onnx, int8) == pytest.approx(1.63, abs=0.01)  # the middle rounds: 1.62 and 1.64
    assert speedup(onnx, {"median_ms": 2.41}) == pytest.approx(2.97 / 2.41)  # one round: the medians' ratio
