"""The one inference path: image -> faces -> the model's preprocessing -> batched forward -> P(fake) -> verdict.

The app, the CLI, the evaluation and the benchmarks all score through `Detector.predict`.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from scipy.special import expit

from .constants import FAKE_INDEX, REAL_INDEX
from .faces import Face, FaceFinder, FaceSettings, face_regions
from .hub import resolve_model_source, split_revision
from .images import ImageError, ImageInput, load_chunks, load_image
from .model_folder import DeepfakeConfig, load_model, read_config
from .preprocess import build_preprocess

PRECISIONS = ("fp32", "bf16")  # bf16: autocast of the model's forward, on CUDA only
_default_face_finders: dict[torch.device, FaceFinder] = {}


def default_face_finder(device: str | torch.device = "cpu") -> FaceFinder:
    """One face finder per process and device, so every model on that device reuses the detections of a picture."""
    device = torch.device(device)
    if device not in _default_face_finders:
        _default_face_finders[device] = FaceFinder(device=device)
    return _default_face_finders[device]


def verdict_for(probability: float, threshold: float) -> str:
    """`fake` at or above the threshold, else `real`."""
    return "fake" if probability >= threshold else "real"


INCONCLUSIVE_MARGIN = 0.1  # a P(fake) this close to the threshold is reported as too close to call


def is_inconclusive(probability: float, threshold: float, margin: float = INCONCLUSIVE_MARGIN) -> bool:
    """Too close to the threshold to call: within `margin` of it on either side."""
    return abs(probability - threshold) < margin


def scored_regions(images: Sequence[Image.Image], settings: FaceSettings,
                   face_finder: FaceFinder) -> list[list[tuple[Image.Image, Face | None]]]:
    """The regions a model with these face settings scores in each RGB image: a crop per usable face, or the whole
    image; the faces of all the images found in batches (`FaceFinder.find_many`)."""
    found = face_finder.find_many(images) if settings.enabled else [[] for _ in images]
    return [[(region, face) for region, face, _ in face_regions(image, faces, settings)]
            for image, faces in zip(images, found)]


@dataclass
class FaceScore:
    """One scored region: a face (index) or, with `face` None, the whole image because no face was found."""

    face: int | None
    box: tuple[int, int, int, int]
    fake_probability: float
    verdict: str


@dataclass
class ImageScore:
    """All regions of one image, or the reason it could not be scored."""

    name: str
    faces: list[FaceScore] = field(default_factory=list)
    error: str | None = None

    @property
    def fake_probability(self) -> float | None:
        """An image is as fake as its most fake face."""
        return max((f.fake_probability for f in self.faces), default=None)

    @property
    def face_found(self) -> bool:
        return any(f.face is not None for f in self.faces)


class Detector:
    """A loaded model folder with its preprocessing, face settings and decision threshold.

    Faces are found by `face_finder`, by default the process's finder on the model's GPU (else the CPU). Precision
    "bf16" runs the model's forward under bf16 autocast, for a model on CUDA only; the default "fp32" keeps the scores
    that the threshold and the calibration were fitted on (bf16 moved P(fake) by up to 0.07, docs/benchmarks.md)."""

    def __init__(self, model: torch.nn.Module, config: dict[str, Any], deepfake: DeepfakeConfig, name: str,
                 revision: str = "local", face_finder: FaceFinder | None = None, folder: Path | None = None, *,
                 precision: str = "fp32") -> None:
        self.model = model.eval()
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}.")
        if precision == "bf16" and self.device.type != "cuda":
            raise ValueError(f"precision 'bf16' (autocast) is for a model on CUDA, and this model is on {self.device}: "
                             "load it with device='cuda', or keep precision 'fp32'.")
        self.precision = precision
        self.folder = folder
        self.config = config
        self.deepfake = deepfake
        self.name = name
        self.revision = revision
        # MTCNN's area resampling fails on Apple's MPS, so only CUDA takes face finding off the CPU
        self.face_finder = face_finder or default_face_finder(self.device if self.device.type == "cuda" else "cpu")
        self.preprocess = build_preprocess(config, deepfake.preprocessing)

    @property
    def threshold(self) -> float:
        return self.deepfake.threshold

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def decodes_ahead(self) -> bool:
        """Whether decoding the next chunk may overlap scoring this one: on an accelerator, or where the CPU has more
        cores than torch's threads use (on a CPU that torch fills, the decoding thread only competes with them)."""
        return self.device.type != "cpu" or (os.cpu_count() or 1) > torch.get_num_threads()

    def autocast(self) -> AbstractContextManager:
        """Where the model's forward runs in `precision`: bf16 autocast on CUDA, else unchanged (fp32)."""
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.precision == "bf16" else nullcontext()

    def regions(self, image: Image.Image, face_crop: bool | None = None) -> list[tuple[Image.Image, Face | None]]:
        """The regions this model scores in an RGB image (faces, or the whole image)."""
        return self.regions_of_many([image], face_crop)[0]

    def regions_of_many(self, images: Sequence[Image.Image],
                        face_crop: bool | None = None) -> list[list[tuple[Image.Image, Face | None]]]:
        """`regions` of several RGB images, their faces found in batches (`FaceFinder.find_many`)."""
        settings = self.deepfake.face_crop
        if face_crop is not None:
            settings = FaceSettings(face_crop, settings.margin, settings.min_face_size)
        return scored_regions(images, settings, self.face_finder)

    @torch.inference_mode()
    def fake_logits(self, batch: torch.Tensor) -> torch.Tensor:
        """log(P(fake) / P(real)) of each input; with `test_time_flip`, the mean over the input and its mirror image."""
        views = (batch, batch.flip(-1)) if self.deepfake.test_time_flip else (batch,)
        with self.autocast():
            logits = torch.stack([self.model(view).float() for view in views]).mean(dim=0)
        return logits[:, FAKE_INDEX] - logits[:, REAL_INDEX]

    @torch.inference_mode()
    def score_regions(self, regions: Sequence[Image.Image], batch_size: int = 32) -> np.ndarray:
        """P(fake) for each region; the logits of a region's windows (mode `tile`) are averaged.

        Averaging logits, not probabilities, keeps the folded temperature exact: mean(z / T) = mean(z) / T.
        """
        inputs = [self.preprocess(region) for region in regions]
        owners = np.concatenate([np.full(len(x), i) for i, x in enumerate(inputs)]) if inputs else np.zeros(0, int)
        stacked = torch.cat(inputs) if inputs else torch.zeros(0)
        logits = []
        for start in range(0, len(stacked), batch_size):
            batch = stacked[start:start + batch_size].to(self.device).contiguous(memory_format=torch.channels_last)
            logits.append(self.fake_logits(batch).cpu().numpy())
        flat = np.concatenate(logits) if logits else np.zeros(0)
        return expit(np.array([flat[owners == i].mean() for i in range(len(inputs))], dtype=np.float64))

    def predict(self, images: Sequence[ImageInput], names: Sequence[str] | None = None, *, batch_size: int = 32,
                face_crop: bool | None = None) -> list[ImageScore]:
        """Score images (paths, bytes, arrays or PIL images); a bad image gets an `error`, never an exception. Chunks
        of `batch_size` images are decoded in parallel, the next one while this one is scored (`decodes_ahead`)."""
        names = list(names) if names is not None else [name_of(image, i) for i, image in enumerate(images)]
        results: list[ImageScore] = []
        for chunk_names, loaded in load_chunks(images, names, batch_size, ahead=self.decodes_ahead):
            results.extend(self.score_loaded(loaded, chunk_names, batch_size=batch_size, face_crop=face_crop))
        return results

    def score_loaded(self, loaded: Sequence[Image.Image | ImageError], names: Sequence[str], *, batch_size: int = 32,
                     face_crop: bool | None = None) -> list[ImageScore]:
        """Score decoded images (`images.load_images` output, errors in place): faces found in batches, then every
        region scored in batches."""
        results = [ImageScore(name, error=str(image) if isinstance(image, ImageError) else None)
                   for name, image in zip(names, loaded)]
        usable = [(result, image) for result, image in zip(results, loaded) if result.error is None]
        pending = []
        for (result, image), regions in zip(usable, self.regions_of_many([image for _, image in usable], face_crop)):
            for index, (region, face) in enumerate(regions):
                box = _clip_box(face.box, image.size) if face else (0, 0, image.width, image.height)
                pending.append((result, None if face is None else index, box, region))
        probabilities = self.score_regions([region for *_, region in pending], batch_size)
        for (result, face, box, _), probability in zip(pending, probabilities):
            p = float(probability)
            result.faces.append(FaceScore(face, box, p, verdict_for(p, self.threshold)))
        return results


def _clip_box(box: tuple[float, ...], size: tuple[int, int]) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = (round(v) for v in box)
    return max(0, x0), max(0, y0), min(size[0], x1), min(size[1], y1)


def name_of(image: ImageInput, index: int) -> str:
    """A path's own text, else `image_<index>`."""
    return str(image) if isinstance(image, (str, Path)) else f"image_{index}"


def load_detector(source: str | Path, face_finder: FaceFinder | None = None, *, device: str | torch.device = "cpu",
                  precision: str = "fp32") -> Detector:
    """A detector from a local model folder or a Hub id (`owner/name[@revision]`), its model on `device`; without a
    `face_finder`, faces are found on that device too. `precision`: see `Detector`."""
    folder, revision = resolve_model_source(source)
    model, config, deepfake = load_model(folder)
    name = split_revision(str(source))[0] if revision != "local" else Path(folder).resolve().name
    return Detector(model.to(device), config, deepfake, name, revision, face_finder, Path(folder),
                    precision=precision)


def face_crops(source: str | Path, image: ImageInput, face_finder: FaceFinder | None = None) -> list[Image.Image]:
    """The regions that a model folder's detector scores in an image: a square crop per face with the folder's
    margin, or the whole image when no face is found. For users of the bare model in timm or transformers, whose
    own transform then resizes each crop as `pretrained_cfg` says."""
    folder, _ = resolve_model_source(source)
    _, deepfake = read_config(Path(folder))
    regions = scored_regions([load_image(image)], deepfake.face_crop, face_finder or default_face_finder())[0]
    return [region for region, _ in regions]
