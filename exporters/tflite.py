"""ONNX to TFLite: onnx2tf builds the TensorFlow graph; TensorFlow's converter quantizes it.

onnx2tf builds the Keras graph; edgekit saves it as a plain SavedModel and converts the fp32 file
from it. The fp16, dynamic-range and full-integer files are converted from that SavedModel by
`tf.lite.TFLiteConverter` (full integer: `tflite_int8`), fed with edgekit's own calibration set, so
onnx2tf's downloaded sample is never needed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from edgekit.exporters.tflite_metadata import export_card, normalize_in_graph, write_metadata

# The TFLite graphs take RGB pixel values 0-255 and normalise per channel inside (see tflite_metadata).
PIXEL_INPUT = {"layout": "NHWC", "normalization": "graph"}

# Written into the SavedModel folder by the onnx2tf step: the ONNX layers in order, so that the full-integer
# step can name TFLite ops by their PyTorch modules (--keep-float).
LAYERS_FILE = "edgekit_layers.json"

# Imported by the step server before it forks a TFLite step (see `edgekit.pipeline.forkserver`).
PRELOAD = ("tensorflow", "onnx2tf", "onnx", "ai_edge_litert.interpreter",
           "mediapipe.tasks.python.metadata.metadata_writers.metadata_writer")

# onnx2tf 1.29 downloads this sample from GitHub unless the file already exists in its working
# directory. edgekit writes it from its bundled photos (onnx2tf uses it only when asked to
# quantize, which edgekit does not ask).
ONNX2TF_SAMPLE = "calibration_image_sample_data_20x128x128x3_float32.npy"


def _write_onnx2tf_sample(folder: Path) -> None:
    from PIL import Image

    from edgekit.calibration import bundled_images

    arrays = []
    for path in bundled_images()[:20]:
        with Image.open(path) as image:
            arrays.append(np.asarray(image.convert("RGB").resize((128, 128)), np.float32) / 255.0)
    np.save(folder / ONNX2TF_SAMPLE, np.stack(arrays))


def convert_onnx2tf(onnx_file: Path, spec, out: Path) -> dict:
    """onnx2tf: a SavedModel (side output `saved_model/`) and the fp32 `.tflite`, NHWC input, output `logits`."""
    import onnx2tf

    saved_model = out.parent / "saved_model"
    _write_onnx2tf_sample(Path.cwd())
    # onnx2tf rewrites its input file in place, and runs onnxsim only if the command is on PATH:
    # give it a copy of the already simplified model and switch its own simplification off.
    scratch = out.parent / "onnx2tf-input" / "model.onnx"
    scratch.parent.mkdir()
    padded = _pad_relu_maxpools(onnx_file, scratch)
    card = export_card(spec)
    normalize_in_graph(scratch, card.mean, card.std)
    layers = _onnx_layers(scratch)
    # onnx2tf's own saving serializes every Keras layer's config three times (its SavedModel, then
    # once inside each of its fp32 and fp16 conversions): 40 of the 45 s it took for mobilenet_v2.
    # edgekit takes the built graph and saves it once, without Keras metadata.
    # output_signaturedefs also makes onnx2tf rename the ONNX names that start with "/" (torch.onnx's
    # scopes), which a SavedModel refuses as variable names.
    model = onnx2tf.convert(input_onnx_file_path=str(scratch), output_folder_path=str(saved_model),
                            non_verbose=True, not_use_onnxsim=True, output_signaturedefs=True,
                            disable_model_save=True)
    shutil.rmtree(scratch.parent)
    _save_serving(model, saved_model)
    (saved_model / LAYERS_FILE).write_text(json.dumps(layers))
    out.write_bytes(_float32_tflite(saved_model))
    return {"contract": PIXEL_INPUT, "info": {"converter": "onnx2tf (graph), TFLiteConverter (file)",
                                              "maxpool_pads_made_explicit": padded,
                                              "metadata": write_metadata(out, spec)}}


def _save_serving(model, folder: Path) -> None:
    """`model` as a SavedModel with one `serving_default` signature whose output is named `logits`."""
    import tensorflow as tf

    module = tf.Module()
    specs = [tf.TensorSpec(tensor.shape, tensor.dtype, tensor.name) for tensor in model.inputs]
    module.serve = tf.function(lambda *inputs: {"logits": model(inputs)}, input_signature=specs)
    serving = module.serve.get_concrete_function()
    # Some onnx2tf layers create variables Keras does not track; the traced function lists them all.
    module.captured_variables = list(serving.variables)
    shutil.rmtree(folder, ignore_errors=True)
    tf.saved_model.save(module, str(folder), signatures={"serving_default": serving})


def _float32_tflite(saved_model: Path) -> bytes:
    """The fp32 file, built-in TFLite ops only (no TensorFlow ops a standard interpreter lacks)."""
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_saved_model(str(saved_model)).convert()


def _onnx_layers(onnx_file: Path) -> list[dict]:
    """The Conv, Gemm and MatMul nodes of `onnx_file` in order, with their output shapes (no batch)."""
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(onnx_file)))
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim][1:]
              for v in [*model.graph.value_info, *model.graph.output]}
    return [{"name": node.name, "shape": shapes.get(node.output[0])} for node in model.graph.node
            if node.op_type in ("Conv", "Gemm", "MatMul")]


def _pad_relu_maxpools(onnx_file: Path, out: Path) -> int:
    """Moves the padding of each MaxPool that reads a Relu into a zero Pad before it; returns how many.

    onnx2tf pads a MaxPool whose padding TensorFlow cannot express with the dtype's minimum,
    -3.4e38. Full-integer calibration then records that value in the range of the pad, the pool
    and the Relu feeding them (they share one scale), which becomes about 1e36: every activation
    rounds to the same integer, and XNNPACK refuses the next layer's requantization scale. A Relu's
    output is never negative and, with pads smaller than the kernel and no ceil mode, every window
    holds at least one real value, so padding with zero gives the same maximum.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(onnx_file))
    graph = model.graph
    producers = {output: node.op_type for node in graph.node for output in node.output}
    nodes, count = [], 0
    for node in graph.node:
        attrs = {attr.name: helper.get_attribute_value(attr) for attr in node.attribute}
        pads, kernel = attrs.get("pads", []), attrs.get("kernel_shape", [])
        plain = (attrs.get("auto_pad", b"NOTSET") == b"NOTSET" and not attrs.get("ceil_mode", 0)
                 and set(attrs.get("dilations", [1])) == {1})
        if (node.op_type != "MaxPool" or producers.get(node.input[0]) != "Relu" or not plain or not any(pads)
                or any(pad >= size for pad, size in zip(pads, kernel + kernel))):
            nodes.append(node)
            continue
        half = len(pads) // 2
        name = f"{node.name}/explicit_pad"
        graph.initializer.append(numpy_helper.from_array(
            np.array([0, 0, *pads[:half], 0, 0, *pads[half:]], np.int64), f"{name}/pads"))
        nodes.append(helper.make_node("Pad", [node.input[0], f"{name}/pads"], [f"{name}/output"], name=name))
        node.input[0] = f"{name}/output"
        next(attr for attr in node.attribute if attr.name == "pads").ints[:] = [0] * len(pads)
        nodes.append(node)
        count += 1
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    return count


def tf_converter(saved_model: Path):
    """TensorFlow and a TFLiteConverter of `saved_model` with the default optimizations on."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return tf, converter


def convert_fp16(saved_model: Path, spec, out: Path) -> dict:
    """fp16 weights; the CPU interpreter dequantizes them and computes in fp32."""
    tf, converter = tf_converter(saved_model)
    converter.target_spec.supported_types = [tf.float16]
    out.write_bytes(converter.convert())
    return {"contract": PIXEL_INPUT, "info": {"metadata": write_metadata(out, spec)}}


def convert_dynamic_range(saved_model: Path, spec, out: Path) -> dict:
    """Dynamic-range quantization: int8 weights, activations quantized on the fly by hybrid kernels."""
    _, converter = tf_converter(saved_model)
    out.write_bytes(converter.convert())
    return {"contract": PIXEL_INPUT, "info": {"metadata": write_metadata(out, spec)},
            "notes": ["Dynamic range: weights are int8, activations stay float and are quantized per inference "
                      "by hybrid kernels. This is not full-integer int8; use tflite-int8 for that."]}
