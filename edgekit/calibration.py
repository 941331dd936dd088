"""Calibration sets for static int8: the bundled photos by default, or the user's images or array.

Never random noise and never a downloaded sample. The bundled photos are real photographs under
public-domain, CC0 and CC BY licences (`edgekit/data/calibration/LICENSES.md`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from edgekit.errors import InvalidInputError, InvalidSpecError
from edgekit.images import IMAGE_SUFFIXES, find_images, load_batch, preprocess
from edgekit.card import ModelCard

DEFAULT_SIZE = 40


class View(NamedTuple):
    """One view of a photo: a square crop (fraction of the shorter side, horizontal and vertical
    position), optionally mirrored, with brightness and saturation factors (1.0 = unchanged)."""

    fraction: float
    fx: float
    fy: float
    mirrored: bool = False
    brightness: float = 1.0
    saturation: float = 1.0


# Views of each bundled photo that calibration uses, in order. Whole photos first: on ImageNet, int8
# calibrated on the 40 whole and mirrored views kept more accuracy than 100 views that included
# zoomed crops.
VIEWS = (
    View(1.0, 0.5, 0.5), View(1.0, 0.5, 0.5, True),
    View(0.7, 0.5, 0.5), View(0.7, 0.0, 0.0), View(0.7, 1.0, 1.0), View(0.7, 0.0, 1.0), View(0.7, 1.0, 0.0),
)
# Views the verifier probes with when no --data is given: crops, positions and colours that no
# calibration view uses, so an artifact is never judged on the very inputs it was calibrated on.
# Most bundled photos are scenes, near ties for an ImageNet classifier whatever the view
# (mobilenet_v2 separates 7-12 of the 20 in each view, effnet_lite0 12-16): four views give about
# 40 decisive probes, so that one flipped near-decisive probe does not decide a verdict alone.
PROBE_VIEWS = (
    View(0.85, 0.25, 0.75, False, 1.15, 0.8),
    View(0.85, 0.75, 0.25, True, 0.85, 1.2),
    View(0.9, 0.5, 0.5, False, 1.1, 0.9),
    View(0.7, 0.5, 0.5, True, 1.1, 0.9),
)


@dataclass(frozen=True)
class CalibrationSet:
    """Preprocessed NCHW float32 calibration inputs, with their provenance and hash."""

    data: np.ndarray
    source: str
    sha256: str

    def to_dict(self) -> dict:
        return {"source": self.source, "samples": int(len(self.data)), "sha256": self.sha256,
                "shape": list(self.data.shape)}


def bundled_images() -> list[Path]:
    """The real photos that ship with edgekit, sorted by name."""
    folder = resources.files("edgekit.data").joinpath("calibration")
    return sorted(Path(str(p)) for p in folder.iterdir() if Path(str(p)).suffix.lower() in IMAGE_SUFFIXES)


def demo_image() -> Path:
    """A bundled photo for demos: Chelsea the cat (CC0)."""
    return next(p for p in bundled_images() if p.stem == "chelsea_cat")


def load_calibration(card: ModelCard, calib: str | Path | None = None, size: int = DEFAULT_SIZE) -> CalibrationSet:
    """The calibration inputs for `card`, preprocessed as its contract says.

    Args:
        card: the model card (sizes and normalisation).
        calib: None for the bundled photos (several crops and mirror images of each), a folder of
            images (the first `size` in sorted order), or a `.npy` array already preprocessed,
            shaped [N, 3, H, W] like the model's input.
        size: how many samples to use at most.
    """
    if size < 1:
        raise InvalidSpecError(f"--calib-size must be at least 1, got {size}")
    if calib is None:
        data, source = _bundled_views(card, size), f"edgekit bundled photos ({len(bundled_images())} photos, {size} views)"
    else:
        path = Path(calib)
        if path.suffix == ".npy":
            data, source = _from_npy(path, card, size), f"array {path}"
        elif path.is_dir():
            items = find_images(path, card)[:size]
            data, source = load_batch([i.path for i in items], card), f"folder {path} ({len(items)} images)"
        else:
            raise InvalidSpecError(f"--calib {str(path)!r} is neither a folder of images nor a .npy file")
    data = np.ascontiguousarray(data, dtype=np.float32)
    return CalibrationSet(data, source, hashlib.sha256(data.tobytes()).hexdigest())


def photo_views(photos: list[Path], card: ModelCard, view: View = VIEWS[0]) -> np.ndarray:
    """One view of each photo, preprocessed by `card`."""
    return np.stack([_preprocess_view(photo, view, card) for photo in photos])


def probe_views(card: ModelCard) -> np.ndarray:
    """The bundled photos in every view of PROBE_VIEWS (none of which calibration uses), preprocessed by `card`."""
    photos = bundled_images()
    return np.concatenate([photo_views(photos, card, view) for view in PROBE_VIEWS])


def _preprocess_view(photo: Path, view: View, card: ModelCard) -> np.ndarray:
    with Image.open(photo) as image:
        return preprocess(_view(image.convert("RGB"), view), card)


def _bundled_views(card: ModelCard, size: int) -> np.ndarray:
    arrays = []
    photos = bundled_images()
    for view in VIEWS:
        for photo in photos:
            if len(arrays) == size:
                return np.stack(arrays)
            arrays.append(_preprocess_view(photo, view, card))
    return np.stack(arrays)


def _view(image: Image.Image, view: View) -> Image.Image:
    if view.mirrored:
        image = ImageOps.mirror(image)
    if view.fraction < 1.0:
        side = int(min(image.size) * view.fraction)
        left = int((image.size[0] - side) * view.fx)
        top = int((image.size[1] - side) * view.fy)
        image = image.crop((left, top, left + side, top + side))
    if view.brightness != 1.0:
        image = ImageEnhance.Brightness(image).enhance(view.brightness)
    if view.saturation != 1.0:
        image = ImageEnhance.Color(image).enhance(view.saturation)
    return image


def _from_npy(path: Path, card: ModelCard, size: int) -> np.ndarray:
    if not path.is_file():
        raise InvalidSpecError(f"calibration file {str(path)!r} does not exist")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise InvalidInputError(f"calibration file {str(path)!r} is not a readable NumPy array ({exc}); save it with "
                                "numpy.save(PATH, array) from a float32 array") from None
    if not isinstance(data, np.ndarray) or not np.issubdtype(data.dtype, np.floating):
        raise InvalidInputError(f"calibration array {str(path)!r} has dtype {getattr(data, 'dtype', type(data))}; "
                                "expected float32, preprocessed by the model card (NCHW, normalised)")
    expected = (3, card.input_size, card.input_size)
    if data.ndim != 4 or tuple(data.shape[1:]) != expected:
        raise InvalidSpecError(
            f"calibration array {str(path)!r} has shape {tuple(data.shape)}; expected [N, {', '.join(map(str, expected))}] "
            "float32, preprocessed by the model card (NCHW, normalised)"
        )
    data = data[:size]
    bad = int(np.count_nonzero(~np.isfinite(data)))
    if bad:
        samples = np.flatnonzero(~np.isfinite(data).reshape(len(data), -1).all(1))
        raise InvalidInputError(f"calibration array {str(path)!r} holds {bad} NaN or infinite values (in samples "
                                f"{', '.join(map(str, samples[:10]))}{', ...' if len(samples) > 10 else ''}); "
                                "quantization ranges would be meaningless. Recompute the array from real images")
    return data
