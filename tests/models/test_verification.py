"""The verification init (`weights="verification"`): a real-photo classifier far from chance whose int8 verdicts
mean something (a right artifact verifies, a wrong one is rejected), rebuilt bit for bit, only where it exists.
Each test runs on one model of each kind: effnet_lite3 (transplanted) and effnet_b0 (fitted)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from edgekit.calibration import load_calibration
from edgekit.contract import Contract
from edgekit.errors import WeightsError
from edgekit.images import find_images, load_batch
from edgekit.models import create_model, get_card
from edgekit.cli import main
from edgekit.models.verification import FITTED, SOURCES, build, serialize, size_note, verification_weights
from edgekit.models.weights import weights_path
from edgekit.parity import TOLERANCES, build_probes, check
from edgekit.parity.metrics import DECISIVE_MARGIN
from edgekit.runners import runner_for
from edgekit.runners.torch_runner import TorchRunner
from tests.parity.test_sabotage import minmax_int8

# One model of each kind. Top-1 on every 4th photo of `imagenet-sample` and the decisive share, measured 2026-12-07:
# effnet_lite3 0.52 / 0.77, effnet_b0 0.64 / 0.79 (all 500: 0.54 / 0.71 and 0.65 / 0.77).
KINDS = {"effnet_lite3": (0.4, 0.6), "effnet_b0": (0.5, 0.6)}
MODELS = [pytest.param(name, marks=pytest.mark.xdist_group(name)) for name in KINDS]
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("model", MODELS)
def test_verification_init_classifies_real_photos_decisively(model: str, imagenet_sample) -> None:
    """Random init: chance top-1 and no decisive photo. The init: far from chance, most photos decisive."""
    card = get_card(model)
    net = create_model(model, weights="verification")
    images = find_images(imagenet_sample, card)[::4]
    batch = torch.from_numpy(load_batch([i.path for i in images], card))
    with torch.no_grad():
        logits = torch.cat([net(batch[i:i + 25]) for i in range(0, len(batch), 25)]).numpy()
    ordered = np.sort(logits, axis=1)
    decisive = ordered[:, -1] - ordered[:, -2] >= DECISIVE_MARGIN * (ordered[:, -1] - ordered[:, 0])
    top1, share = KINDS[model]
    assert np.mean(logits.argmax(1) == np.array([i.label for i in images])) > top1
    assert decisive.mean() > share


@pytest.mark.parametrize("model", MODELS)
def test_int8_without_weights_is_judged_on_the_verification_init(model: str, exported, tmp_path: Path) -> None:
    """`edgekit export effnet_lite3 --target onnx-int8`, no weights: before, "only 0 probes are decisive" (effnet_b0:
    PARITY FAILED on near ties). Now the right artifact verifies on decisive probes, and plain MinMax calibrated on
    noise, checked the same way, fails."""
    artifact = exported(model, "onnx-int8", together=("onnx",))
    assert artifact.status == "verified"
    assert artifact.manifest["weights"]["source"] == "verification"
    assert artifact.manifest["weights"]["init"]["source_model"] == SOURCES[model]
    assert ("fit" in artifact.manifest["weights"]["init"]) == (model in FITTED)
    assert artifact.report.steps[-1].metrics.decisive_probes >= 20
    fp32 = exported(model, "onnx")
    card, contract = get_card(model), Contract.from_dict(fp32.manifest["contract"])
    noise = np.random.default_rng(0).standard_normal((40, 3, card.input_size, card.input_size), dtype=np.float32)
    report = _check_wrong(model, minmax_int8(fp32.file, noise, tmp_path / "noise.onnx"), contract)
    assert not report.passed
    assert report.by_kind["image"].top1_agreement < 0.9


@pytest.mark.xdist_group("effnet_b0")
def test_b0_int8_with_plain_minmax_ranges_is_rejected(exported, tmp_path: Path) -> None:
    """The fitted init tells a near miss too: ONNX Runtime's plain MinMax on the bundled calibration views (edgekit's
    onnx-int8 before issue 9) agreed with it on 89.1% of 46 decisive probes on an AVX-512 Zen 4 (2026-12-07), where
    the right one agrees on 100% of 43: the issue's "about 92% on real photos" case, which the gate must reject. On
    an AVX2 Zen 3, whose init is another file (README, "The verification init"), 76.5% of 51, the right one 96.1%."""
    fp32 = exported("effnet_b0", "onnx", together=("onnx-int8",))  # with an int8 target: on the verification init
    assert fp32.manifest["weights"]["source"] == "verification"
    card, contract = get_card("effnet_b0"), Contract.from_dict(fp32.manifest["contract"])
    views = load_calibration(card, size=40).data
    report = _check_wrong("effnet_b0", minmax_int8(fp32.file, views, tmp_path / "minmax.onnx"), contract)
    assert not report.passed
    assert 0.7 < report.by_kind["image"].top1_agreement < TOLERANCES["int8"].min_top1_agreement


def _check_wrong(model: str, wrong: Path, contract: Contract):
    """The verifier's own check of `wrong` against the verification init, on the default probes."""
    card = get_card(model)
    probes = build_probes(card, contract, None)
    with TorchRunner(create_model(model, weights="verification"), Contract.from_card(card)) as runner:
        reference = runner.infer(probes.reference)
    return check("wrong", runner_for(wrong, contract), reference, probes, TOLERANCES["int8"])


@pytest.mark.parametrize("model", MODELS)
def test_verification_init_file_is_the_same_bytes_in_every_process(model: str) -> None:
    """Manifests record the cached file's sha256 and `edgekit verify` elsewhere rebuilds it, so its bytes may depend
    on the tensors only. Version 3's `torch.save(state, partial_path)` named the archive inside after its temporary,
    process-numbered file: a rebuild anywhere else had another sha256, and verify refused the artifact (exit 2)."""
    path = verification_weights(get_card(model))
    assert path.read_bytes() == serialize(torch.load(path, weights_only=True))


@pytest.mark.xdist_group("effnet_lite3")
def test_verify_rebuilds_the_init_and_refuses_one_of_the_unreproducible_version(exported, tmp_path: Path, capsys) -> None:
    artifact = exported("effnet_lite3", "onnx-int8", together=("onnx",))
    assert main(["verify", str(artifact.directory)]) == 0
    old = tmp_path / artifact.directory.name
    shutil.copytree(artifact.directory, old)
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["weights"]["init"]["version"] = 3
    (old / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert main(["verify", str(old)]) == 2
    assert "version 3 of edgekit's verification init" in capsys.readouterr().err


@pytest.mark.xdist_group("effnet_lite3")
def test_verify_names_the_file_to_copy_when_the_init_was_built_on_another_kind_of_cpu(exported, tmp_path: Path,
                                                                                       capsys) -> None:
    """B0's init built on an AVX-512 Zen 4 and on an AVX2 Zen 3 are different files (2026-12-07). An artifact whose
    manifest records the other machine's file cannot be re-verified here; verify says why and what to copy where."""
    artifact = exported("effnet_lite3", "onnx-int8", together=("onnx",))
    moved = tmp_path / artifact.directory.name
    shutil.copytree(artifact.directory, moved)
    manifest = json.loads((moved / "manifest.json").read_text())
    built_here = manifest["weights"]["sha256"]
    elsewhere = "AVX2" if manifest["weights"]["init"]["cpu_capability"] != "AVX2" else "AVX512"
    manifest["weights"] |= {"sha256": "0" * 64, "init": manifest["weights"]["init"] | {"cpu_capability": elsewhere}}
    (moved / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert main(["verify", str(moved)]) == 2
    error = capsys.readouterr().err
    assert f"sha256 {built_here}) is not the one this artifact was exported from (sha256 {'0' * 64})" in error
    assert f"the exporting machine's PyTorch kernels were {elsewhere}" in error
    assert f"Copy that file from the exporting machine's cache to {verification_weights(get_card('effnet_lite3'))}" \
        in error
    manifest["weights"]["init"]["cpu_capability"] = torch.backends.cpu.get_cpu_capability()  # same kind of CPU
    (moved / "manifest.json").write_text(json.dumps(manifest))
    assert main(["verify", str(moved)]) == 2
    assert "so the pinned versions differ (compare the manifest's `tools` with this install)" in capsys.readouterr().err


def test_models_without_a_verification_init_say_so() -> None:
    with pytest.raises(WeightsError, match="no verification init for effnet_b1"):
        weights_path(get_card("effnet_b1"), "verification")


@pytest.mark.parity
@pytest.mark.parametrize("model", MODELS)
def test_verification_init_rebuilds_bit_for_bit(model: str) -> None:
    """`edgekit verify` rebuilds the reference from the manifest: the cached file must be what a build gives."""
    card = get_card(model)
    cached = torch.load(verification_weights(card), weights_only=True)
    rebuilt = build(card)
    assert cached.keys() == rebuilt.keys()
    assert all(torch.equal(cached[k], rebuilt[k]) for k in cached)
    assert serialize(rebuilt) == verification_weights(card).read_bytes()  # the bytes whose sha256 manifests record


def test_another_input_size_warns_that_the_init_was_measured_at_its_own() -> None:
    """effnet_b0's init fails right int8 artifacts at 240 px (docs/models.md, session 21): an export at another size
    says so instead of leaving a PARITY FAILED unexplained."""
    card = get_card("effnet_b0")
    assert size_note(card, None) is None and size_note(card, card.input_size) is None
    note = size_note(card, 240)
    assert note is not None and "224 px" in note and "240 px" in note and "PARITY FAILED" in note
