"""Empirical bias correction of the weight-rounding error of int8 models, one module per format.

Rounding a layer's weights to int8 shifts the mean of each output channel by
`(W_int8 - W) . E[x]`, where `E[x]` is the mean of the layer's input per channel. The shift is
the same for every image, so it can be taken out of the bias (Nagel et al., "Data-Free
Quantization Through Weight Equalization and Bias Correction", 2019, the empirical variant that
NNCF's and AIMET's bias correction also implement). The means come from the float model on the
calibration set; the graph and its kernels are unchanged.

- `onnx`: ONNX Runtime QDQ graphs (the int32 bias is requantized on its own grid);
- `tflite`: full-integer TFLite files (likewise);
- `pt2e`: PT2E-converted PyTorch graphs before ExecuTorch lowering (the bias is float there).

Written here rather than taken from a library: NNCF's bias correction works only on the graph it
quantizes itself, whose Q/DQ placement ONNX Runtime runs 2.3-3.3x slower than fp32 (measured, see
the README's int8 fidelity section), TensorFlow's and PT2E's quantizers have none, and aimet-onnx
is not installable beside the pinned set.
"""

from __future__ import annotations

import numpy as np


def output_shift(rounding: np.ndarray, mean: np.ndarray, group: int) -> np.ndarray:
    """Per output channel, the mean change of a (grouped) convolution's output caused by `rounding` of its weights.

    `rounding` is laid out [out, in / group, kh, kw] (ONNX's OIHW); `mean` is the input's mean per channel.
    """
    out_channels, per_group = rounding.shape[:2]
    group_of = np.arange(out_channels) // (out_channels // group)
    inputs = mean[group_of[:, None] * per_group + np.arange(per_group)[None, :]]
    return np.einsum("oikl,oi->o", rounding, inputs)
