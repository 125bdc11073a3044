"""The challenge's evaluation perturbations and the neutral re-encoding, all deterministic (no randomness).

`PERTURBATIONS[name][severity]` is a PIL -> PIL function. Severities are "mild", "medium" and "strong", except
"upscale" (enlarging by 1.5), which has the single severity "medium".
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageOps

Perturbation = Callable[[Image.Image], Image.Image]
SEVERITIES = ("mild", "medium", "strong")
NEUTRAL_SIZE = 256
NEUTRAL_QUALITY = 90


class PerturbationError(KeyError):
    """An unknown perturbation name or severity."""

    def __str__(self) -> str:
        return str(self.args[0])


def rotate(image: Image.Image, degrees: float) -> Image.Image:
    """Rotate counter-clockwise about the centre, same size, borders filled by reflection."""
    array = np.asarray(image.convert("RGB"))
    height, width = array.shape[:2]
    matrix = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), degrees, 1.0)
    rotated = cv2.warpAffine(array, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    return Image.fromarray(rotated)


def gaussian_blur(image: Image.Image, sigma: float) -> Image.Image:
    """Gaussian blur with standard deviation `sigma` pixels (kernel of about 6 sigma, reflected borders)."""
    array = np.asarray(image.convert("RGB"))
    return Image.fromarray(cv2.GaussianBlur(array, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT_101))


def rescale(image: Image.Image, factor: float) -> Image.Image:
    """Resize both sides by `factor` (bicubic, antialiased when shrinking)."""
    image = image.convert("RGB")
    size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    return image.resize(size, Image.Resampling.BICUBIC)


def centre_crop_area(image: Image.Image, area: float) -> Image.Image:
    """Centre crop keeping `area` of the pixels (each side scaled by its square root)."""
    image = image.convert("RGB")
    side = math.sqrt(area)
    width, height = max(1, round(image.width * side)), max(1, round(image.height * side))
    left, top = (image.width - width) // 2, (image.height - height) // 2
    return image.crop((left, top, left + width, top + height))


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    """Re-compress as JPEG at `quality` (PIL defaults otherwise) and decode back to RGB."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    decoded = Image.open(buffer)
    decoded.load()
    return decoded


def mirror(image: Image.Image, vertical: bool = False) -> Image.Image:
    """Mirror left-right, or top-bottom when `vertical`."""
    image = image.convert("RGB")
    return ImageOps.flip(image) if vertical else ImageOps.mirror(image)


def _ladder(function: Callable[..., Image.Image], parameter: str, *values: Any) -> dict[str, Perturbation]:
    return {severity: partial(function, **{parameter: value}) for severity, value in zip(SEVERITIES, values)}


PERTURBATIONS: dict[str, dict[str, Perturbation]] = {
    "rotation": _ladder(rotate, "degrees", 5.0, 15.0, 30.0),
    "mirror": _ladder(mirror, "vertical", False, False, True),
    "blur": _ladder(gaussian_blur, "sigma", 0.5, 1.0, 2.0),
    "scale": _ladder(rescale, "factor", 0.75, 0.5, 0.33),
    "upscale": {"medium": partial(rescale, factor=1.5)},
    "crop": _ladder(centre_crop_area, "area", 0.9, 0.75, 0.5),
    "jpeg": _ladder(jpeg, "quality", 90, 70, 50),
}


def apply_perturbation(image: Image.Image, name: str, severity: str) -> Image.Image:
    """`PERTURBATIONS[name][severity](image)`, with an error that lists the valid choices."""
    if name not in PERTURBATIONS:
        raise PerturbationError(f"Unknown perturbation {name!r}; choose one of {sorted(PERTURBATIONS)}.")
    if severity not in PERTURBATIONS[name]:
        raise PerturbationError(f"Perturbation {name!r} has severities {list(PERTURBATIONS[name])}, not {severity!r}.")
    return PERTURBATIONS[name][severity](image)


def neutral_reencode(image: Image.Image) -> Image.Image:
    """RGB, shorter side to 256 (bicubic), centre crop 256x256, JPEG quality 90, decoded back to a PIL RGB image."""
    image = image.convert("RGB")
    scale = NEUTRAL_SIZE / min(image.size)
    size = (max(NEUTRAL_SIZE, round(image.width * scale)), max(NEUTRAL_SIZE, round(image.height * scale)))
    resized = image.resize(size, Image.Resampling.BICUBIC)
    left, top = (size[0] - NEUTRAL_SIZE) // 2, (size[1] - NEUTRAL_SIZE) // 2
    return jpeg(resized.crop((left, top, left + NEUTRAL_SIZE, top + NEUTRAL_SIZE)), NEUTRAL_QUALITY)


def iter_perturbations(selection: str = "all") -> Iterator[tuple[str, str, Perturbation]]:
    """(name, severity, function) for "all", "none", or a comma list of names, name:severity items and severities
    (`medium`: every perturbation at that severity)."""
    if selection == "none":
        return
    items = list(PERTURBATIONS) if selection == "all" else [s.strip() for s in selection.split(",") if s.strip()]
    for item in items:
        if item in SEVERITIES:
            yield from ((name, item, ladder[item]) for name, ladder in PERTURBATIONS.items() if item in ladder)
            continue
        name, _, severity = item.partition(":")
        if name not in PERTURBATIONS:
            raise PerturbationError(f"Unknown perturbation {name!r} in {selection!r}; "
                                    f"choose from {sorted(PERTURBATIONS)} or a severity {list(SEVERITIES)}.")
        if severity and severity not in PERTURBATIONS[name]:
            raise PerturbationError(f"Perturbation {name!r} has severities {list(PERTURBATIONS[name])}, "
                                    f"not {severity!r}.")
        for level in [severity] if severity else list(PERTURBATIONS[name]):
            yield name, level, PERTURBATIONS[name][level]


def perturbed_examples(function: Perturbation) -> Callable[[dict[str, list]], dict[str, list]]:
    """A `datasets` `with_transform` function applying `function` to the `image` column, other columns kept."""

    def apply(batch: dict[str, list]) -> dict[str, list]:
        return {**batch, "image": [function(image) for image in batch["image"]]}

    return apply
