"""Every model torchvision also defines has its exact state-dict and computes the same outputs."""

from __future__ import annotations

import pytest
import torch
import torchvision

from edgekit.calibration import bundled_images, photo_views
from edgekit.models import create_model, get_card

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
    """Our seeded init (BatchNorm statistics measured on photos, so the logits follow the input) loaded into theirs."""
    ours = create_model(name)
    reference = torchvision.models.get_model(TORCHVISION_TWINS[name], weights=None).eval()
    ours_state = ours.state_dict()
    theirs_state = reference.state_dict()
    assert list(ours_state) == list(theirs_state)
    assert {k: tuple(v.shape) for k, v in ours_state.items()} == {k: tuple(v.shape) for k, v in theirs_state.items()}

    reference.load_state_dict(ours_state, strict=True)
    x = torch.from_numpy(photo_views(bundled_images()[-2:], get_card(name)))
    with torch.no_grad():
        expected, actual = reference(x), ours(x)
    assert (expected[0] - expected[1]).abs().max() > 1e-2, "the logits must follow the input, or the comparison means nothing"
    torch.testing.assert_close(actual, expected, atol=1e-6, rtol=0)


def test_torchvision_names_resolve_as_aliases() -> None:
    assert get_card("efficientnet_b0").name == "effnet_b0"
    assert get_card("efficientnet_lite0").name == "effnet_lite0"
