"""Cards hold the real counts of their models, and those agree with the published figures."""

from __future__ import annotations

import pytest

from edgekit.models import create_model, get_card, list_models
from edgekit.models.complexity import count_macs, count_params

# (params in millions, GMACs, resolution the figure was measured at). torchvision's model docs for
# the torchvision architectures ("GFLOPS" there are multiply-accumulates); EfficientNet-Lite from
# the d-li14/efficientnet-lite.pytorch README, which matches TensorFlow's Lite models.
PUBLISHED = {
    "shufflenet_v2_x0_5": (1.37, 0.04, 224),
    "shufflenet_v2_x1_0": (2.28, 0.14, 224),
    "shufflenet_v2_x1_5": (3.50, 0.30, 224),
    "shufflenet_v2_x2_0": (7.39, 0.58, 224),
    "effnet_b0": (5.29, 0.39, 224),
    "effnet_b1": (7.79, 0.69, 240),
    "effnet_b2": (9.11, 1.09, 288),
    "effnet_b3": (12.23, 1.83, 300),
    "mobilenet_v2": (3.50, 0.30, 224),
    "effnet_lite0": (4.652, 0.385, 224),
    "effnet_lite1": (5.417, 0.600, 240),
    "effnet_lite2": (6.092, 0.860, 260),
    "effnet_lite3": (8.197, 1.383, 280),
    "effnet_lite4": (13.007, 2.553, 300),
}


@pytest.mark.parametrize("name", list_models())
def test_card_counts_are_the_models_counts(name: str) -> None:
    card = get_card(name)
    model = create_model(name)
    assert card.params == count_params(model)
    assert card.macs == count_macs(model, card.input_size)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_counts_match_published_figures(name: str) -> None:
    params_m, gmacs, resolution = PUBLISHED[name]
    digits = len(str(params_m).split(".")[1])
    model = create_model(name)
    assert round(count_params(model) / 1e6, digits) == params_m
    assert round(count_macs(model, resolution) / 1e9, digits) == gmacs


def test_compound_scaling_resolutions() -> None:
    assert [get_card(f"effnet_b{i}").input_size for i in range(4)] == [224, 240, 260, 300]
    assert [get_card(f"effnet_lite{i}").input_size for i in range(5)] == [224, 240, 260, 280, 300]


def test_cifar_variant_is_32px_10_class_without_maxpool() -> None:
    card = get_card("shufflenet_v2_cifar_x1_0")
    model = create_model("shufflenet_v2_cifar_x1_0")
    assert (card.input_size, card.num_classes, len(card.class_names)) == (32, 10, 10)
    assert model.conv1[0].stride == (1, 1)
    assert not any(m.__class__.__name__ == "MaxPool2d" for m in model.modules())
    assert [len(model.stage2), len(model.stage3), len(model.stage4)] == [4, 8, 4]


def test_every_card_has_its_class_names() -> None:
    for name in list_models():
        card = get_card(name)
        assert len(card.class_names) == card.num_classes
    assert get_card("mobilenet_v2").class_names[:2] == ("tench", "goldfish")
    assert len(set(get_card("mobilenet_v2").class_names)) == 1000


def test_cards_are_frozen() -> None:
    card = get_card("mobilenet_v2")
    with pytest.raises(AttributeError):
        card.input_size = 300  # type: ignore[misc]
