"""ExecuTorch targets: `.pte` programs lowered to XNNPACK, fp32 and PT2E int8."""

from __future__ import annotations

from edgekit.targets import TORCH, XNNPACK_INT8_ON_X86, Step, Target, register_target

EXECUTORCH = TORCH + (("executorch", "executorch"), ("torchao", "executorch"))

register_target(Target(
    "executorch", "ExecuTorch .pte (fp32): torch.export, lowered to XNNPACK",
    (Step("torch.export -> executorch (xnnpack)", "executorch:export_pte", "model.pte", "fp32"),),
    requires=EXECUTORCH, supports_dynamic_batch=False,
))
register_target(Target(
    "executorch-int8", "ExecuTorch .pte int8: PT2E with the XNNPACK quantizer, per-channel weights, calibrated",
    (Step("torch.export -> pt2e int8 -> executorch (xnnpack)", "executorch:export_pte_int8", "model.int8.pte",
          "int8"),),
    requires=EXECUTORCH, calibrated=True, supports_dynamic_batch=False,
    notes=(XNNPACK_INT8_ON_X86.format(fp32="executorch"),),
    caveat="for ARM devices: on x86 slower than executorch where the CPU lacks VNNI (1.10x, mobilenet_v2, AVX2)",
))
