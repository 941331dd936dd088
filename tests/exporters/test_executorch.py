"""ExecuTorch targets beyond test_targets.py's MobileNetV2: one more family, and delegation reporting.

The families slice (test_families.py) runs the ExecuTorch targets with -m parity only; here
EfficientNet-Lite0, with its ImageNet weights, stands for the other families in `make test`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgekit.targets import get_target

UNAVAILABLE = get_target("executorch").unavailable_reason()
pytestmark = pytest.mark.skipif(UNAVAILABLE is not None, reason=f"executorch is unavailable here: {UNAVAILABLE}")


@pytest.mark.slow
@pytest.mark.xdist_group("mobilenet_v2")
@pytest.mark.parametrize("target", ["executorch", "executorch-int8"])
def test_mobilenet_v2_is_fully_delegated_to_xnnpack(exported, target: str) -> None:
    manifest = exported("mobilenet_v2", target, weights="imagenet").manifest
    info = manifest["steps"][-1]["info"]
    # 52 convolutions, 35 ReLU6, 10 residual adds, the pooling and the classifier (fp32: BatchNorms folded away)
    assert info["delegated_subgraphs"] == 1 and info["delegated_nodes"] >= 100
    assert info["portable_nodes"] == 0 and info["delegated_share"] == 1.0
    assert manifest["tools"]["executorch"] and manifest["tools"]["torchao"]
    if target == "executorch-int8":
        assert info["logits_range"][1] == pytest.approx(1.5 * info["logits_range_calibrated"][1])
    else:  # every BatchNorm folded before the export, so the lowering has a third fewer nodes to handle
        assert info["batchnorms_folded"] == 52


@pytest.mark.slow
@pytest.mark.xdist_group("effnet_lite0")
@pytest.mark.parametrize("target", ["executorch", "executorch-int8"])
def test_effnet_lite0_verifies(exported, target: str) -> None:
    artifact = exported("effnet_lite0", target, weights="imagenet")
    final = artifact.report.steps[-1].metrics
    assert artifact.status == "verified"
    if target == "executorch":
        assert final.failed_elements == 0 and final.top1_agreement == 1.0
    else:
        assert final.decisive_probes >= 10 and final.top1_agreement >= 0.95
    assert artifact.manifest["steps"][-1]["info"]["delegated_share"] > 0


def test_partly_delegated_program_is_reported_and_runs(tmp_path: Path) -> None:
    import torch

    from edgekit.contract import Contract
    from edgekit.exporters.executorch import _lower
    from edgekit.runners.executorch_runner import ExecuTorchRunner

    class ConvCumsum(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x).cumsum(1).mean((2, 3))  # XNNPACK has no cumsum

    model, x = ConvCumsum().eval(), torch.randn(1, 3, 8, 8)
    out = tmp_path / "model.pte"
    result = _lower(torch.export.export(model, (x,)), out)
    info = result["info"]
    assert info["delegated_nodes"] >= 1 and info["portable_nodes"] >= 1
    assert any("cumsum" in op for op in info["portable_ops"]) and 0 < info["delegated_share"] < 1
    assert "run on ExecuTorch's portable kernels" in result["notes"][0]
    contract = Contract(input_size=8, resize_size=8, interpolation="bilinear", mean=(0.0,) * 3, std=(1.0,) * 3,
                        batch=1)
    with ExecuTorchRunner(out, contract, threads=1) as runner:
        got = runner.infer(x.numpy())
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x).numpy(), atol=1e-5, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.xdist_group("mobilenet_v2")
def test_predict_without_pytorch_names_what_the_runtime_needs(exported, tmp_path: Path) -> None:
    import subprocess
    import sys

    from edgekit.calibration import demo_image

    directory = exported("mobilenet_v2", "executorch", weights="imagenet").directory
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['torch'] = None  # as if not installed\n")
    result = subprocess.run([sys.executable, "-m", "edgekit.cli", "predict", str(directory), str(demo_image())],
                            capture_output=True, text=True, timeout=300,
                            env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 4
    assert "ExecuTorch's Python runtime needs PyTorch" in result.stderr


def test_fold_batchnorm_folds_every_conv_batchnorm_pair_and_keeps_the_function() -> None:
    import torch

    from edgekit.exporters.executorch import fold_batchnorm
    from edgekit.models import create_model

    for name, pairs in (("effnet_lite0", 49), ("shufflenet_v2_x0_5", 56)):  # SAME-padded convolutions; two branches
        model = create_model(name).eval()
        folded, count = fold_batchnorm(model)
        assert count == pairs and not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
        assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == pairs  # the original is untouched
        x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            torch.testing.assert_close(folded(x), model(x), atol=5e-5, rtol=1e-4)
