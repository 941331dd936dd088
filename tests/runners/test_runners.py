"""Runners hide layout, integer I/O and fixed batch sizes from their callers."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.contract import Contract
from edgekit.runners import runner_for
from edgekit.runners.base import dequantize, quantize


def test_quantize_round_trip_is_within_half_a_step() -> None:
    x = np.linspace(-2.0, 2.6, 101, dtype=np.float32)
    q = quantize(x, 0.0187, -14, "int8")
    assert q.dtype == np.int8
    assert np.abs(dequantize(q, 0.0187, -14) - x).max() <= 0.0187 / 2 + 1e-6
    assert quantize(np.array([1e6, -1e6], np.float32), 0.01, 0, "int8").tolist() == [127, -128]



def test_graph_normalised_runners_feed_a_photo_its_exact_pixels() -> None:
    """A photo's pixels, normalised and turned back, must be the pixels a client feeds, not within 1e-5 of them: a
    dynamic-range TFLite model quantizes its activations from its input, and those 1e-5 flipped mobilenet_v2's top-1
    on 4 of 500 photos against LiteRT and MediaPipe fed the same photos. A tensor that is not a photo stays as it is."""
    from edgekit.images import load_batch
    from edgekit.calibration import bundled_images
    from edgekit.models import get_card

    card = get_card("mobilenet_v2")
    contract = Contract.from_card(card)
    photos = load_batch(bundled_images()[:4], card)
    noise = np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)
    pixels = contract.pixels_of(np.concatenate([photos, noise]))
    assert np.array_equal(pixels[:4], np.rint(pixels[:4])) and 0 <= pixels[:4].min() and pixels[:4].max() <= 255
    exact = (noise * np.asarray(card.std, np.float32).reshape(1, 3, 1, 1)
             + np.asarray(card.mean, np.float32).reshape(1, 3, 1, 1)) * np.float32(255)
    assert np.array_equal(pixels[4:], exact)

@pytest.mark.slow
def test_fixed_batch_artifact_takes_any_number_of_inputs(exported) -> None:
    artifact = exported("shufflenet_v2_cifar_x0_5", "onnx")
    contract = Contract.from_dict(artifact.manifest["contract"])
    assert contract.batch == 1
    batch = np.random.default_rng(0).standard_normal((5, 3, 32, 32), dtype=np.float32)
    with runner_for(artifact.file, contract) as runner:
        together = runner.infer(batch)
        alone = np.concatenate([runner.infer(batch[i:i + 1]) for i in range(5)])
    np.testing.assert_array_equal(together, alone)
    four = exported("shufflenet_v2_cifar_x0_5", "onnx", batch=4)  # `edgekit predict` on 1, 3 or 5 images of it
    contract = Contract.from_dict(four.manifest["contract"])
    assert contract.batch == 4
    with runner_for(four.file, contract) as runner:
        for count in (1, 3, 4, 5):
            np.testing.assert_allclose(runner.infer(batch[:count]), alone[:count], rtol=0, atol=1e-5)


@pytest.mark.slow
@pytest.mark.xdist_group("mobilenet_v2")
def test_tflite_int8_runner_takes_float_nchw(exported) -> None:
    from ai_edge_litert.interpreter import Interpreter

    artifact = exported("mobilenet_v2", "tflite-int8", weights="imagenet")
    contract = Contract.from_dict(artifact.manifest["contract"])
    image = np.random.default_rng(1).standard_normal((1, 3, 224, 224), dtype=np.float32)
    with runner_for(artifact.file, contract) as runner:
        logits = runner.infer(image)
    interpreter = Interpreter(model_path=str(artifact.file))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert inp["dtype"] == np.uint8 and tuple(inp["shape"]) == (1, 224, 224, 3) and contract.normalization == "graph"
    pixels = contract.pixels_of(image).transpose(0, 2, 3, 1)  # the graph normalises: it takes pixel values 0-255
    interpreter.set_tensor(inp["index"], quantize(pixels, *inp["quantization"], "uint8"))
    interpreter.invoke()
    np.testing.assert_array_equal(logits, dequantize(interpreter.get_tensor(out["index"]), *out["quantization"]))


def test_runner_refuses_to_infer_before_activation(tmp_path) -> None:
    runner = runner_for(tmp_path / "m.onnx", Contract(32, 32, "bilinear", (0, 0, 0), (1, 1, 1)))
    with pytest.raises(RuntimeError, match="activate"):
        runner.infer(np.zeros((1, 3, 32, 32), np.float32))
