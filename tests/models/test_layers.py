"""TensorFlow SAME padding exports to ONNX exactly, at odd sizes too (where floor and truncation differ)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from edgekit.models._layers import Conv2dSame


@pytest.mark.parametrize("size, kernel, stride", [(35, 5, 2), (15, 3, 2), (65, 5, 2), (112, 3, 2), (9, 5, 1)])
def test_same_padding_conv_matches_onnx_runtime(tmp_path, size: int, kernel: int, stride: int) -> None:
    torch.manual_seed(0)
    conv = Conv2dSame(4, 4, kernel, stride, 0, groups=4, bias=False).eval()
    x = torch.randn(1, 4, size, size)
    torch.onnx.export(conv, (x,), str(tmp_path / "c.onnx"), dynamo=False, opset_version=17)
    session = ort.InferenceSession(str(tmp_path / "c.onnx"), providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        expected = conv(x).numpy()
    assert out.shape == expected.shape == (1, 4, -(-size // stride), -(-size // stride))
    np.testing.assert_allclose(out, expected, atol=1e-6)
