"""A MediaPipe Tasks client: vision.ImageClassifier on the .tflite alone (names from its embedded metadata).

    python mediapipe_client.py MODEL.tflite {crop|roi} RESIZE INPUT IMAGE... > results.json

`crop`: the image is resized and center-cropped first (Pillow, as the contract says) and MediaPipe
gets the INPUT x INPUT crop. `roi`: MediaPipe gets the whole photo with the same center crop as
its region of interest and resizes it itself (bilinear, no antialiasing). `full`: the whole photo,
no region of interest (MediaPipe stretches it to INPUT x INPUT).
"""

from __future__ import annotations

import json
import sys

import _contract

_contract.no_edgekit()
sys.modules["tensorflow"] = None  # `import mediapipe` pulls TensorFlow in whenever it is installed; a device has none

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
import mediapipe as mp  # noqa: E402
from mediapipe.tasks.python import BaseOptions  # noqa: E402
from mediapipe.tasks.python.components.containers import rect  # noqa: E402
from mediapipe.tasks.python.vision import ImageClassifier, ImageClassifierOptions  # noqa: E402
from mediapipe.tasks.python.vision.core.image_processing_options import ImageProcessingOptions  # noqa: E402


def center_roi(width: int, height: int, resize_size: int, input_size: int) -> ImageProcessingOptions:
    """The contract's center crop as a normalized region of interest of the whole photo."""
    fraction = input_size / resize_size
    side = fraction * min(width, height)
    left, top = (width - side) / 2 / width, (height - side) / 2 / height
    return ImageProcessingOptions(region_of_interest=rect.RectF(left=left, top=top, right=1 - left, bottom=1 - top))


def main(model: str, mode: str, resize_size: int, input_size: int, images: list[str]) -> list[dict]:
    options = ImageClassifierOptions(base_options=BaseOptions(model_asset_path=model), max_results=5)
    results = []
    with ImageClassifier.create_from_options(options) as classifier:
        for path in images:
            if mode == "crop":
                array = np.asarray(_contract.crop(path, resize_size, input_size, "bilinear"), np.uint8)
                result = classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(array)))
            else:
                with Image.open(path) as image:
                    array = np.ascontiguousarray(np.asarray(image.convert("RGB"), np.uint8))
                roi = center_roi(array.shape[1], array.shape[0], resize_size, input_size) if mode == "roi" else None
                result = classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=array), roi)
            categories = result.classifications[0].categories
            best = categories[0]
            tied = [c.index for c in categories if c.score == best.score]
            results.append({"image": path, "index": best.index, "name": best.category_name, "tied": tied})
    return results


if __name__ == "__main__":
    json.dump(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:]), sys.stdout)
