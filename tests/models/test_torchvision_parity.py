"""Every model torchvision also defines has its exact state-dict and computes the same outputs."""

from __future__ import annotations

import pytest
import torch
import torchvision

from edgekit.models import create_model, get_card
from tests.conftest import randomize_batchnorm

TORCHVISION_TWINS = {
    "shufflenet_v2_x0_5": "shufflenet_v2_x0_5",
    "shufflenet_v2_x1_0": "shufflenet_v2_x1_0",
    "shufflenet_v2_x1_5": "shufflenet_v2_x1_5",
    "shufflenet_v2_x2_0": "shufflenet_v2_x2_0",
    "effnet_b0": "efficientnet_b0",
    "effnet_b1": "efficientnet_b1",
    "effnet_b2": "efficientnet_b2",
    "effnet_b3": "efficientnet_b3",
    "mobilenet_v2": "mobilenet_v2",
}


@pytest.mark.parametrize("name", sorted(TORCHVISION_TWINS))
def test_same_state_dict_and_outputs_as_torchvision(name: str) -> None:
    torch.manual_seed(0)
    reference = randomize_batchnorm(torchvision.models.get_model(TORCHVISION_TWINS[name], weights=None))
    ours = create_model(name)
    theirs_state = reference.state_dict()
    ours_state = ours.state_dict()
    assert list(ours_state) == list(theirs_state)
    assert {k: tuple(v.shape) for k, v in ours_state.items()} == {k: tuple(v.shape) for k, v in theirs_state.items()}

    ours.load_state_dict(theirs_state, strict=True)
    size = get_card(name).input_size
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, actual = reference(x), ours(x)
    assert expected.std() > 0.05, "random logits should not collapse, or the comparison means nothing"
    torch.testing.assert_close(actual, expected, atol=1e-6, rtol=0)


def test_torchvision_names_resolve_as_aliases() -> None:
    assert get_card("efficientnet_b0").name == "effnet_b0"
    assert get_card("efficientnet_lite0").name == "effnet_lite0"
