"""The card's preprocessing equals torchvision's transforms, and labels come from file names or folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torchvision import transforms

from edgekit.images import find_images, preprocess
from edgekit.models import get_card


@pytest.mark.parametrize("name", ["mobilenet_v2", "effnet_b0", "effnet_lite1", "shufflenet_v2_cifar_x1_0"])
def test_preprocess_matches_torchvision(imagenet_sample: Path, name: str) -> None:
    card = get_card(name)
    interpolation = transforms.InterpolationMode(card.interpolation)
    pipeline = transforms.Compose([
        transforms.Resize(card.resize_size, interpolation=interpolation),
        transforms.CenterCrop(card.input_size),
        transforms.ToTensor(),
        transforms.Normalize(card.mean, card.std),
    ])
    for path in sorted(imagenet_sample.iterdir())[:3]:
        with Image.open(path) as image:
            np.testing.assert_allclose(preprocess(image, card), pipeline(image.convert("RGB")).numpy(), atol=1e-5)


def test_synset_labels(imagenet_sample: Path) -> None:
    items = find_images(imagenet_sample, get_card("mobilenet_v2"))
    assert len(items) == 500
    assert items[0].label == 0 and items[-1].label == 998


def test_image_folder_labels(tmp_path: Path) -> None:
    card = get_card("shufflenet_v2_cifar_x0_5")
    for folder in ("cat", "truck"):
        (tmp_path / folder).mkdir()
        Image.new("RGB", (40, 40)).save(tmp_path / folder / "a.png")
    assert [i.label for i in find_images(tmp_path, card)] == [3, 9]
