"""The fast slice of the parity matrix in `make test`: one model of every family through every CPU target.

MobileNetV2 runs every target in test_targets.py. The other families run here with the weights
they have offline (EfficientNet-Lite0's ImageNet checkpoint), edgekit's verification init (EfficientNet-B0)
or the seeded random init (ShuffleNetV2). Pairs the release matrix lists as unsupported must fail in
exactly the way its reason says.
"""

from __future__ import annotations

import pytest

from edgekit.errors import ParityError
from edgekit.models import get_card, list_models
from edgekit.targets import get_target, list_targets
from tests.parity.matrix import UNSUPPORTED

REPRESENTATIVES = {
    "shufflenet_v2": ("shufflenet_v2_x0_5", None),
    "shufflenet_v2_cifar": ("shufflenet_v2_cifar_x0_5", None),
    "efficientnet": ("effnet_b0", "verification"),
    "efficientnet_lite": ("effnet_lite0", "imagenet"),
}
CPU_TARGETS = [name for name in list_targets() if not name.startswith("tensorrt")]
CASES = [(model, weights, target) for model, weights in REPRESENTATIVES.values() for target in CPU_TARGETS]
# Run with -m parity only (and in make parity's matrix): the default suite exports them on MobileNetV2
# (tests/runners/test_openvino.py), which keeps their cost there to about a minute.
PARITY_ONLY = ("openvino", "openvino-bf16", "openvino-int8")
PARITY_ONLY += ("executorch", "executorch-int8", "torchscript-lite")  # default suite: test_executorch.py, test_targets.py
# TFLite costs an onnx2tf pass per model (about a minute each on 2 cores). The default suite keeps it for
# MobileNetV2 (test_targets.py) and ShuffleNetV2 (its channel shuffle converts only after onnxsim); the other
# families run their TFLite targets in make parity, which keeps the default suite under its 20 minutes.
TFLITE = tuple(name for name in CPU_TARGETS if name.startswith("tflite"))
PARITY_ONLY_FOR = {model: TFLITE for model in ("shufflenet_v2_cifar_x0_5", "effnet_b0", "effnet_lite0")}
PARITY_ONLY_FOR["effnet_b0"] += ("onnx-int8-dynamic",)  # the default suite keeps B0's static onnx-int8


def test_every_family_has_a_representative() -> None:
    families = {get_card(name).family for name in list_models()}
    assert families == set(REPRESENTATIVES) | {"mobilenet_v2"}


@pytest.mark.slow
@pytest.mark.parametrize("model, weights, target", [
    pytest.param(m, w, t, marks=[pytest.mark.xdist_group(m)]
                 + [pytest.mark.parity] * (t in PARITY_ONLY or t in PARITY_ONLY_FOR.get(m, ())), id=f"{m}-{t}")
    for m, w, t in CASES])
def test_family_through_cpu_target(exported, model: str, weights: str | None, target: str) -> None:
    reason = get_target(target).unavailable_reason()
    if reason:
        pytest.skip(f"{target} is unavailable here: {reason}")
    if (model, target) in UNSUPPORTED:
        with pytest.raises(ParityError, match="cannot be judged on edgekit's seeded random init"):
            exported(model, target, weights=weights)
        return
    artifact = exported(model, target, weights=weights)
    final = artifact.report.steps[-1].metrics
    assert artifact.status == "verified"
    assert artifact.manifest["weights"]["source"] == weights
    if get_target(target).precision == "fp32":
        assert final.failed_elements == 0 and final.top1_agreement == 1.0
    if get_target(target).precision in ("int8", "int8-dynamic"):
        assert final.decisive_probes >= 5
