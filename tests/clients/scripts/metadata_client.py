"""Reads a .tflite file's embedded metadata with MediaPipe's generated flatbuffer schema and zipfile only.

    python metadata_client.py MODEL.tflite... > metadata.json

The metadata is the model's "TFLITE_METADATA" buffer; the packed files (labels.txt) are a zip
archive appended to the flatbuffer, which any zip reader opens.
"""

from __future__ import annotations

import json
import sys
import zipfile

import _contract

_contract.no_edgekit()
sys.modules["tensorflow"] = None  # `import mediapipe` pulls TensorFlow in whenever it is installed; a device has none

from mediapipe.tasks.metadata import metadata_schema_py_generated as meta_fb  # noqa: E402
from mediapipe.tasks.metadata import schema_py_generated as schema_fb  # noqa: E402


def main(path: str) -> dict:
    data = open(path, "rb").read()
    model = schema_fb.Model.GetRootAsModel(data, 0)
    entries = [model.Metadata(i) for i in range(model.MetadataLength())]
    entry = next(e for e in entries if e.Name() == b"TFLITE_METADATA")
    buffer = model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
    metadata = meta_fb.ModelMetadataT.InitFromObj(meta_fb.ModelMetadata.GetRootAsModelMetadata(buffer, 0))
    subgraph = metadata.subgraphMetadata[0]
    image, scores = subgraph.inputTensorMetadata[0], subgraph.outputTensorMetadata[0]
    options = image.processUnits[0].options
    packed = zipfile.ZipFile(path)
    return {
        "name": metadata.name.decode(), "version": metadata.version.decode(), "author": metadata.author.decode(),
        "description": metadata.description.decode(), "min_parser_version": metadata.minParserVersion.decode(),
        "mean": [float(v) for v in options.mean], "std": [float(v) for v in options.std],
        "output_files": [(f.name.decode(), f.type) for f in scores.associatedFiles],
        "labels_type": meta_fb.AssociatedFileType.TENSOR_AXIS_LABELS,
        "packed": packed.namelist(), "labels": packed.read("labels.txt").decode("utf-8").splitlines(),
    }


if __name__ == "__main__":
    json.dump([main(path) for path in sys.argv[1:]], sys.stdout)
