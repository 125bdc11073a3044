"""Several detectors side by side and their ensemble: the mean of calibrated P(fake) with its own threshold.

`models/ensemble.json` (or any file of that form) names the members and the threshold chosen on validation.
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .detector import Detector, FaceScore, ImageScore, load_detector, name_of, verdict_for
from .images import ImageInput, load_chunks
from .model_folder import ModelFolderError

ENSEMBLE_NAME = "ensemble"


@dataclass
class EnsembleResult:
    """One image: each member's score and the ensemble's, face by face."""

    members: dict[str, ImageScore]
    ensemble: ImageScore
    seconds: dict[str, float] = field(default_factory=dict)  # each member's share of its chunk's scoring time

    @property
    def error(self) -> str | None:
        return self.ensemble.error

    def member_probability(self, model: str, face: int, faces: int) -> float:
        """`model`'s P(fake) for face `face` of a row of `faces` faces: its own score of that face when it scored as
        many faces (members share one face finder, so equal counts are the same faces), else its image-level score."""
        score = self.members[model]
        return score.faces[face].fake_probability if len(score.faces) == faces else score.fake_probability


@dataclass
class Ensemble:
    """Detectors scored on the same faces; faces match by index because the face finder is shared."""

    detectors: list[Detector]
    threshold: float = 0.5

    def predict(self, images: Sequence[ImageInput], names: Sequence[str] | None = None, *, batch_size: int = 32,
                face_crop: bool | None = None) -> list[EnsembleResult]:
        """Load each image once, score it with every member, and average face by face."""
        return [result for chunk in self.predict_chunks(images, names, batch_size=batch_size, face_crop=face_crop)
                for result in chunk]

    def predict_chunks(self, images: Sequence[ImageInput], names: Sequence[str] | None = None, *,
                       batch_size: int = 32, face_crop: bool | None = None) -> Iterator[list[EnsembleResult]]:
        """`predict`, one chunk of `batch_size` images at a time; the next chunk decodes while this one is scored
        where the members allow it (`Detector.decodes_ahead`)."""
        names = list(names) if names is not None else [name_of(image, i) for i, image in enumerate(images)]
        ahead = all(detector.decodes_ahead for detector in self.detectors)
        for chunk_names, loaded in load_chunks(images, names, batch_size, ahead=ahead):
            per_model, seconds = {}, {}
            for detector in self.detectors:
                start = time.perf_counter()
                per_model[detector.name] = detector.score_loaded(loaded, chunk_names, batch_size=batch_size,
                                                                 face_crop=face_crop)
                seconds[detector.name] = (time.perf_counter() - start) / len(chunk_names)
            members = [{model: scores[i] for model, scores in per_model.items()} for i in range(len(chunk_names))]
            yield [EnsembleResult(scores, self._combine(name, list(scores.values())), seconds)
                   for name, scores in zip(chunk_names, members)]

    def _combine(self, name: str, scores: list[ImageScore]) -> ImageScore:
        if scores[0].error:  # an image that could not be loaded fails for every member alike
            return ImageScore(name, error=scores[0].error)
        combined = ImageScore(name)
        aligned = len({len(s.faces) for s in scores}) == 1
        if aligned:
            for faces in zip(*(s.faces for s in scores)):
                p = float(np.mean([f.fake_probability for f in faces]))
                combined.faces.append(FaceScore(faces[0].face, faces[0].box, p, verdict_for(p, self.threshold)))
        else:  # members cropped differently: one image-level score
            p = float(np.mean([s.fake_probability for s in scores]))
            first = scores[0].faces[0]
            combined.faces.append(FaceScore(first.face, first.box, p, verdict_for(p, self.threshold)))
        return combined


def load_ensemble(sources: Sequence[str], threshold: float | None = None, *, device: str | torch.device = "cpu",
                  precision: str = "fp32") -> Ensemble:
    """Detectors from folders or Hub ids on `device` (faces found there too); the threshold defaults to a single
    model's own, else to the one recorded in an ensemble.json beside the members, else 0.5."""
    detectors = [load_detector(source, device=device, precision=precision) for source in sources]
    return Ensemble(detectors, ensemble_threshold(sources, detectors) if threshold is None else threshold)


def ensemble_threshold(sources: Sequence[str], detectors: Sequence[Detector]) -> float:
    """A single model's own threshold; for several, the one recorded in `ensemble.json` of the members' parent
    folder when it names these members; else 0.5."""
    if len(detectors) == 1:
        return detectors[0].threshold
    parents = {Path(s).resolve().parent for s in sources if Path(s).is_dir()}
    for parent in parents:
        path = parent / "ensemble.json"
        if path.is_file():
            try:
                record = json.loads(path.read_text())
            except json.JSONDecodeError as error:
                raise ModelFolderError(f"{path}: malformed JSON ({error}).") from None
            if sorted(record.get("members", [])) == sorted(Path(s).resolve().name for s in sources):
                return float(record["threshold"])
    return 0.5


DEFAULT_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
DEFAULTS_FILE = "defaults.json"


def read_defaults(models_dir: Path = DEFAULT_MODELS_DIR) -> dict:
    """`models/defaults.json`: {"models": [folder names], "headline": one of them or "ensemble", ...}; without the
    file, every folder under `models/` that holds a config.json, sorted by name, the first one the headline."""
    path = models_dir / DEFAULTS_FILE
    if not path.is_file():
        names = [config.parent.name for config in sorted(models_dir.glob("*/config.json"))]
        return {"models": names, "headline": names[0] if names else ""}
    try:
        record = json.loads(path.read_text())
        names = record["models"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ModelFolderError(f"{path}: expected {{\"models\": [folder names under {models_dir}]}} "
                               f"({error}).") from None
    if not isinstance(names, list) or not names or not all(isinstance(name, str) for name in names):
        raise ModelFolderError(f"{path}: 'models' must be a non-empty list of folder names under {models_dir}.")
    headline = record.get("headline", names[0])
    if headline not in [*names, ENSEMBLE_NAME]:
        raise ModelFolderError(f"{path}: 'headline' must name one of its models or {ENSEMBLE_NAME!r}, "
                               f"got {headline!r}.")
    return {**record, "headline": headline}


def default_sources(models_dir: Path = DEFAULT_MODELS_DIR) -> list[str]:
    """The embedded default models' folders (`read_defaults`), the headline model first."""
    return [str(models_dir / name) for name in read_defaults(models_dir)["models"]]


def default_headline(models_dir: Path = DEFAULT_MODELS_DIR) -> str:
    """Whose verdict leads, in the app and the CLI: a default model's name, or "ensemble" (their mean)."""
    return read_defaults(models_dir)["headline"]
