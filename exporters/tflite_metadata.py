"""What the standard TFLite clients need from an artifact: pixel input, and metadata inside the file.

MediaPipe's `ImageClassifier` (like the TFLite Task Library) feeds a float32 input with one mean
and one std for all three channels, and refuses more ("Per-channel image normalization is not
available", mediapipe/tasks/cc/components/processors/image_preprocessing_graph.cc); it feeds a
uint8 input the raw pixel values, and refuses int8 inputs. ImageNet models normalise per channel.
So edgekit's TFLite graphs take RGB pixel values 0-255 and normalise inside, per channel, with a
depthwise 1x1 convolution before the first layer (`normalize_in_graph`), and the contract says
`normalization: "graph"`. Their metadata then states mean 0 and std 1 (pixels go in as they
are), packs `labels.txt` as the output's TENSOR_AXIS_LABELS file, and names model and version.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.backends import require

NORMALIZED = "{}/normalized"


def export_card(spec):
    """The card of this export, with a trained checkpoint's class names (the spec's own card omits them)."""
    from edgekit.models import model_card

    return model_card(spec.model, num_classes=spec.num_classes, input_size=spec.input_size, weights=spec.weights_file)


def normalize_in_graph(onnx_file: Path, mean, std) -> None:
    """Rewrites `onnx_file` in place to take pixel values 0-255: x / (255 std) - mean / std, per channel.

    The normalisation is one depthwise 1x1 convolution, so full-integer quantization takes the
    pixels exactly and rounds once, to the scale the normalised input had before; a Sub and a Div
    would round twice. On the same probes int8 parity came out the same all three ways (cosine
    0.9599 with the convolution, 0.9589 with Sub and Div, 0.9593 with the caller normalising).
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(onnx_file))
    graph = model.graph
    name = graph.input[0].name
    normalized = NORMALIZED.format(name)
    for node in graph.node:
        node.input[:] = [normalized if tensor == name else tensor for tensor in node.input]
    mean, std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
    graph.initializer.extend([
        numpy_helper.from_array((1 / (255 * std)).astype(np.float32).reshape(3, 1, 1, 1), f"{name}/normalize_scale"),
        numpy_helper.from_array((-mean / std).astype(np.float32), f"{name}/normalize_shift"),
    ])
    normalize = helper.make_node("Conv", [name, f"{name}/normalize_scale", f"{name}/normalize_shift"], [normalized],
                                 name=f"{name}/normalize", group=3, kernel_shape=[1, 1])
    nodes = [normalize, *graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(onnx_file))


def to_pixels(batch: np.ndarray, mean, std) -> np.ndarray:
    """A normalised NHWC batch back to pixel values 0-255 (what the TFLite graphs take)."""
    return (batch * np.asarray(std, np.float32) + np.asarray(mean, np.float32)) * np.float32(255)


def pixel_grid_notes(contract: dict) -> list[str]:
    """A note when an integer input does not hold pixel values exactly (calibration never reached 0 and 255)."""
    quant = contract.get("input_quant")
    if not quant:
        return []
    grid = (1.0, 0 if quant["dtype"] == "uint8" else -128)
    if np.isclose(quant["scale"], grid[0], rtol=1e-6, atol=0) and quant["zero_point"] == grid[1]:
        return []
    return [f"The {quant['dtype']} input's scale and zero point are {quant['scale']:.6g} and {quant['zero_point']}, not "
            f"{grid[0]:g} and {grid[1]} (raw pixels), because the calibration images never reached both 0 and 255. "
            "edgekit and clients that quantize as the manifest says are right; MediaPipe, which feeds raw pixels, "
            "is not. Calibrate with photos that hold black and white pixels."]


def write_metadata(path: Path, spec) -> dict:
    """Embeds TFLite model metadata in `path` (rewritten in place); returns what was written, for the manifest.

    The graph is untouched: the metadata and the packed labels file go into the flatbuffer's
    metadata buffer and a zip archive appended to it, which interpreters ignore.
    """
    require("mediapipe", extra="tflite")
    _provide_metadata_version()
    from mediapipe.tasks.python.metadata.metadata_writers import metadata_info, metadata_writer

    import edgekit

    card = export_card(spec)

    class _Writer(metadata_writer.MetadataWriter):
        def add_general_info(self, model_name, model_description=None, version=None, author=None):
            # MediaPipe's own add_general_info takes no version.
            self._general_md = metadata_info.GeneralMd(name=model_name, version=version, description=model_description,
                                                       author=author)
            return self

    description = (f"{card.name} ({card.label_set}, {card.num_classes} classes), exported by edgekit {edgekit.__version__}. "
                   f"Input: RGB pixel values 0-255, NHWC; resize the shorter side to {card.resize_size} "
                   f"({card.interpolation}, antialiased), center-crop {card.input_size}; the graph subtracts "
                   f"mean {_fmt(card.mean)} and divides by std {_fmt(card.std)} (of the 0-1 range) itself. "
                   "Output: raw logits, no softmax.")
    writer = _Writer(bytearray(path.read_bytes()))
    writer.add_general_info(card.name, description, version=f"edgekit {edgekit.__version__}", author="edgekit")
    writer.add_image_input([0.0], [1.0], description="RGB pixel values 0-255; the graph normalises them per channel.")
    writer.add_classification_output(metadata_writer.Labels().add(list(card.class_names)),
                                     description="Raw logits (no softmax), one per class, in labels.txt order.")
    content, _ = writer.populate()
    del writer  # its temporary folder goes now, not at interpreter exit (where its __del__ fails)
    path.write_bytes(content)
    return {"name": card.name, "version": f"edgekit {edgekit.__version__}", "labels": "labels.txt",
            "normalization_mean": [0.0], "normalization_std": [1.0]}


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"


VERSION_MODULE = "mediapipe.tasks.cc.metadata.python._pywrap_metadata_version"


def _provide_metadata_version() -> None:
    """Stands in for MediaPipe's `_pywrap_metadata_version` where its wheel lacks it (1.2.2 on PyPI does).

    `metadata.py` imports that extension only to stamp the metadata's minimum parser version.
    This is the same rule in Python (mediapipe/tasks/cc/metadata/metadata_version.cc): 1.0.0,
    raised by each schema member added later that the metadata uses.
    """
    import importlib.util
    import sys
    import types

    try:
        if importlib.util.find_spec(VERSION_MODULE) is not None:
            return
    except ModuleNotFoundError:  # its parent packages are missing too
        pass
    parts = VERSION_MODULE.split(".")
    for depth in range(3, len(parts)):  # mediapipe.tasks.cc, .metadata, .python: empty packages in this process
        name = ".".join(parts[:depth])
        if name not in sys.modules and importlib.util.find_spec(name) is None:
            package = types.ModuleType(name)
            package.__path__ = []
            sys.modules[name] = package
    module = types.ModuleType(VERSION_MODULE)
    module.GetMinimumMetadataParserVersion = minimum_parser_version
    sys.modules[VERSION_MODULE] = module


def minimum_parser_version(buffer: bytes) -> str:
    """The oldest metadata parser that reads `buffer` (a ModelMetadata flatbuffer), as "major.minor.patch"."""
    from mediapipe.tasks.metadata import metadata_schema_py_generated as fb

    metadata = fb.ModelMetadataT.InitFromObj(fb.ModelMetadata.GetRootAsModelMetadata(bytearray(buffer), 0))
    found = [(1, 0, 0)]

    def files(items) -> None:
        for item in items or []:
            found.append((1, 0, 1) if item.type == fb.AssociatedFileType.VOCABULARY else (1, 0, 0))
            found.append((1, 4, 0) if item.type == fb.AssociatedFileType.SCANN_INDEX_FILE else (1, 0, 0))
            found.append((1, 4, 1) if item.version is not None else (1, 0, 0))

    def units(items) -> None:
        later = {fb.ProcessUnitOptions.BertTokenizerOptions: (1, 1, 0),
                 fb.ProcessUnitOptions.SentencePieceTokenizerOptions: (1, 1, 0),
                 fb.ProcessUnitOptions.RegexTokenizerOptions: (1, 2, 1)}
        found.extend(later.get(item.optionsType, (1, 0, 0)) for item in items or [])

    for subgraph in metadata.subgraphMetadata or []:
        for tensor in (subgraph.inputTensorMetadata or []) + (subgraph.outputTensorMetadata or []):
            files(tensor.associatedFiles)
            units(tensor.processUnits)
            if tensor.content is not None and tensor.content.contentPropertiesType == fb.ContentProperties.AudioProperties:
                found.append((1, 3, 0))
        files(subgraph.associatedFiles)
        for present, version in ((subgraph.inputProcessUnits, (1, 1, 0)), (subgraph.outputProcessUnits, (1, 1, 0)),
                                 (subgraph.inputTensorGroups, (1, 2, 0)), (subgraph.outputTensorGroups, (1, 2, 0)),
                                 (subgraph.customMetadata, (1, 5, 0))):
            if present is not None:
                found.append(version)
        units(subgraph.inputProcessUnits)
        units(subgraph.outputProcessUnits)
    files(metadata.associatedFiles)
    return ".".join(str(part) for part in max(found))
