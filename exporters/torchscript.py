"""TorchScript: traced (or scripted) `.pt`, and the mobile lite-interpreter `.ptl`."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def _example(spec) -> torch.Tensor:
    return torch.randn(spec.batch, 3, spec.card.input_size, spec.card.input_size, generator=torch.Generator().manual_seed(0))


def export_torchscript(model: nn.Module, spec, out: Path) -> dict:
    """Traces the model; falls back to scripting if the trace does not reproduce eager outputs."""
    example = _example(spec)
    with torch.no_grad():
        expected = model(example)
        traced = torch.jit.trace(model, example, check_trace=False)
        if torch.allclose(traced(example), expected, atol=1e-5, rtol=1e-5):
            module, method = traced, "trace"
        else:
            module, method = torch.jit.script(model), "script"
    torch.jit.save(module, str(out))
    return {"info": {"method": method}}


def mobile_unavailable() -> str | None:
    """optimize_for_mobile asserts unless torch was built with XNNPACK (PyPI's Linux wheels are not)."""
    if getattr(torch._C, "_is_xnnpack_enabled", lambda: False)():
        return None
    return (f"this torch build ({torch.__version__}) has no XNNPACK, which optimize_for_mobile requires; "
            "use a torch CPU build that includes XNNPACK (PyTorch's CPU wheels and mobile builds do). "
            "torchscript-lite writes the same format unoptimised; for new mobile work use executorch")


def export_mobile(pt_file: Path, spec, out: Path) -> dict:
    """`optimize_for_mobile` (BatchNorm folding, fusion) and the lite-interpreter format."""
    from torch.utils.mobile_optimizer import optimize_for_mobile

    module = torch.jit.load(str(pt_file), map_location="cpu").eval()
    optimized = optimize_for_mobile(module)
    optimized._save_for_lite_interpreter(str(out))
    return {"info": {"optimize_for_mobile": True}}


def export_lite(pt_file: Path, spec, out: Path) -> dict:
    """The lite-interpreter format as is: no optimize_for_mobile, so no BatchNorm folding or fusion."""
    module = torch.jit.load(str(pt_file), map_location="cpu").eval()
    module._save_for_lite_interpreter(str(out))
    return {"info": {"optimize_for_mobile": False}}


def export_dynamic_int8(model: nn.Module, spec, out: Path) -> dict:
    """PyTorch dynamic quantization, saved as TorchScript. Only nn.Linear becomes int8.

    `quantize_dynamic` ignores nn.Conv2d silently, so for a CNN only the classifier head is
    quantized. The returned note says exactly how much of the model that is.
    """
    from torch.ao.quantization import quantize_dynamic

    linear = sum(p.numel() for m in model.modules() if isinstance(m, nn.Linear) for p in m.parameters())
    total = sum(p.numel() for p in model.parameters())
    quantized = quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    with torch.no_grad():
        module = torch.jit.trace(quantized, _example(spec), check_trace=False)
    torch.jit.save(module, str(out))
    share = linear / total
    note = (f"Only nn.Linear layers are int8 ({linear:,} of {total:,} parameters, {share:.1%}); every "
            f"convolution stays fp32. PyTorch's quantize_dynamic does not quantize Conv2d. "
            f"For an int8 CNN use onnx-int8 or tflite-int8.")
    return {"notes": [note], "info": {"int8_parameters": linear, "total_parameters": total, "int8_share": share}}
