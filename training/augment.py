"""Training augmentations (albumentations): one config dataclass, one transform from RGB array to model tensor.

Order: region blackout on the original pixels (landmarks are in its coordinates), degradations at native
resolution (blur, JPEG, noise: where the challenge applies them), geometry, then the size step ("resize" to the
model's size as the seed did, or "crop" and "tile": a native-resolution random crop, tiled up when the image is
smaller, which keeps upsampling traces; a "tile" model is scored on windows covering the face), colour,
normalisation, then random patch masking on the model's input. Blur and JPEG default to p=0.1 (CNNDetection;
GENERALIZATION.md); downscaling (shrink and enlarge back, so that upsampling traces alone cannot mean "fake") and
patch masking (SAFE: black squares over up to `mask_max_fraction` of the input, so no single region decides) are off
unless asked for.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2
from PIL import Image

from hub_utils.model_folder import PREPROCESSING_MODES
from hub_utils.preprocess import tile_to_size

MODES = PREPROCESSING_MODES  # crop and tile train on the same random windows; they differ in scoring
REGIONS = ("eyes", "nose", "mouth")
# Left eye, right eye, nose tip, left and right mouth corner, as fractions of width and height of an aligned face.
CANONICAL_LANDMARKS = np.array([[0.36, 0.45], [0.64, 0.45], [0.50, 0.58], [0.39, 0.72], [0.61, 0.72]], np.float32)


class AugmentConfigError(ValueError):
    """An augmentation setting is unknown or out of range."""


@dataclass
class AugmentConfig:
    """Every augmentation with its probability; set a probability to 0 to switch it off."""

    mode: str = "resize"
    blackout_p: float = 0.1
    rotate_p: float = 0.2
    rotate_limit: float = 15.0
    hflip_p: float = 0.5
    vflip_p: float = 0.0
    jpeg_p: float = 0.1
    jpeg_quality: tuple[int, int] = (30, 100)
    blur_p: float = 0.1
    blur_sigma: tuple[float, float] = (0.1, 3.0)
    downscale_p: float = 0.0
    # shrink factor before enlarging back (the challenge's rescaling)
    downscale_range: tuple[float, float] = (0.33, 0.9)
    noise_p: float = 0.05
    noise_std: tuple[float, float] = (0.01, 0.05)  # fraction of the 0-255 range
    color_p: float = 0.2
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.03
    affine_p: float = 0.2
    shear: float = 8.0
    zoom: tuple[float, float] = (0.9, 1.1)
    shift: float = 0.05
    mask_p: float = 0.0
    mask_max_fraction: float = 0.75  # most of the model input hidden (SAFE draws the share from 0 to 0.75)
    mask_patch: int = 16  # side of each black square, in model-input pixels

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise AugmentConfigError(f"mode must be one of {MODES}, got {self.mode!r}.")
        if not 0.0 < self.mask_max_fraction <= 1.0 or self.mask_patch < 1:
            raise AugmentConfigError(f"mask_max_fraction must lie in (0, 1] and mask_patch be >= 1, got "
                                     f"{self.mask_max_fraction!r} and {self.mask_patch!r}.")
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name.endswith("_p") and not 0.0 <= value <= 1.0:
                raise AugmentConfigError(f"{field.name} is a probability and must lie in [0, 1], got {value!r}.")
            if isinstance(value, list):
                setattr(self, field.name, tuple(value))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> AugmentConfig:
        """Build from a dict (e.g. a parsed config file); unknown keys raise."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise AugmentConfigError(f"Unknown augmentation settings {unknown}; valid ones are {sorted(known)}.")
        return cls(**values)


def region_box(landmarks: np.ndarray, region: str) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) around the eyes, the nose or the mouth, scaled by the distance between the eyes."""
    left_eye, right_eye, nose, mouth_left, mouth_right = landmarks[:, :2]
    d = max(float(np.linalg.norm(right_eye - left_eye)), 4.0)
    if region == "eyes":
        (x0, y0), (x1, y1) = np.minimum(left_eye, right_eye) - d * 0.4, np.maximum(left_eye, right_eye) + d * 0.25
    elif region == "nose":
        (x0, y0), (x1, y1) = nose - (d * 0.3, d * 0.55), nose + (d * 0.3, d * 0.15)
    else:
        (x0, y0) = np.minimum(mouth_left, mouth_right) - (d * 0.2, d * 0.25)
        (x1, y1) = np.maximum(mouth_left, mouth_right) + (d * 0.2, d * 0.25)
    return int(round(x0)), int(round(y0)), int(round(x1)), int(round(y1))


class RegionBlackout(A.DualTransform):
    """Black out the eyes, the nose or the mouth (one chosen at random), placed from 5 landmark keypoints."""

    def __init__(self, p: float = 0.5):
        super().__init__(p=p)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        keypoints = np.asarray(data.get("keypoints", []))
        if len(keypoints) < 5:
            return {"box": None}
        return {"box": region_box(keypoints[:5, :2], self.py_random.choice(REGIONS))}

    def apply(self, img: np.ndarray, box: tuple[int, int, int, int] | None = None, **params: Any) -> np.ndarray:
        if box is None:
            return img
        height, width = img.shape[:2]
        x0, y0, x1, y1 = max(0, box[0]), max(0, box[1]), min(width, box[2]), min(height, box[3])
        out = img.copy()
        out[y0:y1, x0:x1] = 0
        return out

    def apply_to_keypoints(self, keypoints: np.ndarray, **params: Any) -> np.ndarray:
        return keypoints

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ()


class TileToSize(A.ImageOnlyTransform):
    """Repeat the image (wrap padding) until both sides reach `size`; no resampling."""

    def __init__(self, size: int, p: float = 1.0):
        super().__init__(p=p)
        self.size = size

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        return tile_to_size(img, self.size)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("size",)


def _size_step(cfg: AugmentConfig, size: int) -> list[A.BasicTransform]:
    if cfg.mode == "resize":
        return [A.SmallestMaxSize(max_size=size, interpolation=cv2.INTER_AREA), A.CenterCrop(size, size)]
    return [TileToSize(size), A.RandomCrop(size, size)]


def _patch_mask(cfg: AugmentConfig, size: int) -> A.CoarseDropout:
    """Black `mask_patch` squares, as many as cover 0 to `mask_max_fraction` of a `size` square (overlaps allowed)."""
    most = max(1, round(cfg.mask_max_fraction * size * size / cfg.mask_patch**2))
    side = (cfg.mask_patch, cfg.mask_patch)
    return A.CoarseDropout(num_holes_range=(1, most), hole_height_range=side, hole_width_range=side, fill=0,
                           p=cfg.mask_p)


def build_compose(cfg: AugmentConfig, image_size: int, mean: Sequence[float] | None = None,
                  std: Sequence[float] | None = None, seed: int | None = None) -> A.Compose:
    """The albumentations pipeline of `cfg`; call it with image= and keypoints= (5 landmarks, xy pixels).

    With `mean` and `std` it ends in a normalised CHW tensor; without them in uint8 HxWx3 pixels.
    """
    reflect = cv2.BORDER_REFLECT_101
    transforms = [
        RegionBlackout(p=cfg.blackout_p),
        A.GaussianBlur(sigma_limit=cfg.blur_sigma, blur_limit=0, p=cfg.blur_p),
        A.Downscale(scale_range=cfg.downscale_range, p=cfg.downscale_p,
                    interpolation_pair={"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_CUBIC}),
        A.ImageCompression(quality_range=cfg.jpeg_quality, p=cfg.jpeg_p),
        A.GaussNoise(std_range=cfg.noise_std, p=cfg.noise_p),
        A.HorizontalFlip(p=cfg.hflip_p),
        A.VerticalFlip(p=cfg.vflip_p),
        A.Rotate(limit=cfg.rotate_limit, border_mode=reflect, p=cfg.rotate_p),
        A.Affine(scale=cfg.zoom, translate_percent=(-cfg.shift, cfg.shift), shear=(-cfg.shear, cfg.shear),
                 border_mode=reflect, p=cfg.affine_p),
        *_size_step(cfg, image_size),
        A.ColorJitter(brightness=cfg.brightness, contrast=cfg.contrast, saturation=cfg.saturation, hue=cfg.hue,
                      p=cfg.color_p),
        _patch_mask(cfg, image_size),
    ]
    if mean is not None and std is not None:
        transforms += [A.Normalize(mean=mean, std=std, max_pixel_value=255.0), ToTensorV2()]
    keypoints = A.KeypointParams(format="xy", remove_invisible=False)
    return A.Compose(transforms, keypoint_params=keypoints, seed=seed)


class TrainTransform:
    """Callable (RGB uint8 HxWx3 array, landmarks (5, 2) or None) -> normalised float CHW tensor (or uint8 pixels).

    Reseeds itself once per DataLoader worker from the worker's seed, so workers do not repeat each other.
    """

    def __init__(self, compose: A.Compose):
        self.compose = compose
        self._worker_seed: int | None = None

    def __call__(self, image: np.ndarray, landmarks: np.ndarray | None = None) -> torch.Tensor | np.ndarray:
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"Expected an RGB uint8 HxWx3 array, got {image.dtype} {image.shape}; "
                             "convert with PIL's .convert('RGB') and np.asarray first.")
        worker = torch.utils.data.get_worker_info()
        if worker is not None and worker.seed != self._worker_seed:
            self._worker_seed = worker.seed
            self.compose.set_random_seed(worker.seed % 2**32)
        if landmarks is None:
            landmarks = CANONICAL_LANDMARKS * (image.shape[1], image.shape[0])
        return self.compose(image=image, keypoints=np.asarray(landmarks, np.float32).reshape(-1, 2))["image"]


def build_train_transform(cfg: AugmentConfig, image_size: int, mean: Sequence[float], std: Sequence[float],
                          seed: int | None = None) -> TrainTransform:
    """Training transform of `cfg` for a model taking `image_size` squares normalised with `mean` and `std`."""
    return TrainTransform(build_compose(cfg, image_size, mean, std, seed))


def transform_examples(transform: Callable[..., torch.Tensor]) -> Callable[[dict[str, list]], dict[str, list]]:
    """A `datasets` `with_transform` function: batch of PIL images (and optional landmarks) -> pixel_values."""

    def apply(batch: dict[str, list]) -> dict[str, list]:
        landmarks = batch.get("landmarks") or [None] * len(batch["image"])
        pixels = [transform(np.asarray(im.convert("RGB")), lm) for im, lm in zip(batch["image"], landmarks)]
        return {"pixel_values": pixels, "label": batch["label"]}

    return apply


def preview_grid(images: Sequence[np.ndarray], columns: int = 4) -> Image.Image:
    """Paste equally sized HxWx3 uint8 arrays into one grid image."""
    height, width = images[0].shape[:2]
    rows = (len(images) + columns - 1) // columns
    grid = Image.new("RGB", (columns * width, rows * height))
    for index, array in enumerate(images):
        grid.paste(Image.fromarray(array), ((index % columns) * width, (index // columns) * height))
    return grid


def preview(data: str, output: Path, *, n: int = 16, seed: int = 0, mode: str = "resize", size: int = 160) -> None:
    """Write a grid of `n` augmented samples of `data` (un-normalised, canonical landmark positions)."""
    from training.data import load_source  # only the preview reads data; training passes its own rows

    ds = load_source(data)
    indices = random.Random(seed).sample(range(len(ds)), min(n, len(ds)))
    transform = TrainTransform(build_compose(AugmentConfig(mode=mode), size, seed=seed))
    arrays = [transform(np.asarray(ds[index]["image"].convert("RGB"))) for index in indices]
    output.parent.mkdir(parents=True, exist_ok=True)
    preview_grid(arrays).save(output)
