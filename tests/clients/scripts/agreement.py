"""Top-1 agreement of every client with `edgekit predict`, over a folder of photos (not part of the tests).

    python tests/clients/scripts/agreement.py OUT_DIR PHOTO_DIR

OUT_DIR holds mobilenet_v2 artifacts from one export (any of onnx, tflite-fp32, tflite-fp16,
tflite-int8-dynamic, tflite-int8; whichever is there is run). Each client runs in its own process, without edgekit, as in test_clients.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
TFLITE = ("tflite-fp32", "tflite-fp16", "tflite-int8-dynamic", "tflite-int8")


def run(script: str, *args: str) -> list[dict]:
    result = subprocess.run([sys.executable, str(HERE / script), *args], capture_output=True, text=True, cwd=HERE)
    if result.returncode:
        raise SystemExit(result.stderr[-3000:])
    return json.loads(result.stdout)


def agreement(client: list[dict], reference: list[dict]) -> tuple[int, int]:
    """(photos whose top-1 agrees, exact ties included; photos where only a tie makes it agree)."""
    same = ties = 0
    for mine, theirs in zip(client, reference, strict=True):
        top = theirs["topk"]
        tied = {c["index"] for c in top if c["probability"] == top[0]["probability"]}
        if mine["index"] == top[0]["index"]:
            same += 1
        elif tied & {mine["index"], *mine["tied"]}:
            same, ties = same + 1, ties + 1
    return same, ties


def main(out: str, photos_dir: str) -> None:
    from edgekit.images import find_images
    from edgekit.models import get_card
    from edgekit.prediction import predict

    items = find_images(photos_dir, get_card("mobilenet_v2"))
    photos, labels = [str(i.path) for i in items], [i.label for i in items]
    folder = {t: Path(out) / f"mobilenet_v2-{t}" for t in ("onnx", *TFLITE)}
    reference = {t: predict(d, photos, topk=5) for t, d in folder.items() if d.is_dir()}
    rows = []
    if "onnx" in reference:
        rows.append(("onnxruntime (metadata_props only)", "onnx", run("ort_client.py", str(folder["onnx"] / "model.onnx"), *photos)))
        rows.append(("OpenCV DNN (manifest, Pillow resize)", "onnx", run("opencv_client.py", str(folder["onnx"]), *photos)))
        for resize in ("area", "linear"):
            rows.append((f"OpenCV DNN (manifest, cv2.resize INTER_{resize.upper()})", "onnx",
                         run("opencv_client.py", str(folder["onnx"]), "--resize", resize, *photos)))
    for target in TFLITE:
        if target not in reference:
            continue
        model = str(folder[target] / json.loads((folder[target] / "manifest.json").read_text())["artifact"]["file"])
        rows.append(("ai_edge_litert (manifest)", target, run("litert_client.py", str(folder[target]), *photos)))
        rows.append(("MediaPipe, Pillow crop", target, run("mediapipe_client.py", model, "crop", "256", "224", *photos)))
        rows.append(("MediaPipe, own resize of the ROI", target, run("mediapipe_client.py", model, "roi", "256", "224", *photos)))
        rows.append(("MediaPipe, whole photo", target, run("mediapipe_client.py", model, "full", "256", "224", *photos)))
    print(f"| client | artifact | top-1 agreement with edgekit predict ({len(photos)} photos) | client top-1 | edgekit top-1 |")
    print("|---|---|---|---|---|")
    for client, target, results in rows:
        same, ties = agreement(results, reference[target])
        tie_note = f" ({ties} by an exact tie)" if ties else ""
        print(f"| {client} | {target} | {same}/{len(photos)} = {100 * same / len(photos):.1f}%{tie_note} "
              f"| {accuracy([r['index'] for r in results], labels)} "
              f"| {accuracy([r['topk'][0]['index'] for r in reference[target]], labels)} |")


def accuracy(predicted: list[int], labels: list[int | None]) -> str:
    known = [(p, t) for p, t in zip(predicted, labels) if t is not None]
    return f"{100 * sum(p == t for p, t in known) / len(known):.1f}%" if known else "-"


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
