"""What the Space offers, as plain data: models loaded once at start, results of `Ensemble.predict` as JSON-ready
dicts and table rows, model metadata from each folder's config and card, and Grad-CAM/spectrum pictures.

No model logic lives here: faces, scores and verdicts come from hub_utils. Errors are hub_utils' `ImageError`,
`ModelFolderError` and this module's `NoModelError`; the UI turns them into sentences for people.
"""
from __future__ import annotations

import json
import statistics
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import ModelCard
from PIL import Image

from hub_utils.constants import CARD_NAME, EVALUATION_NAME, LEAVE_ONE_OUT_NAME, WEIGHTS_NAME
from hub_utils.detector import INCONCLUSIVE_MARGIN, Detector, ImageScore, is_inconclusive, load_detector, verdict_for
from hub_utils.ensemble import ENSEMBLE_NAME, Ensemble, EnsembleResult, ensemble_threshold
from hub_utils.explain import GradCamExplainer, RegionExplanation
from hub_utils.images import ImageInput, load_image
from hub_utils.model_folder import ModelFolderError
from hub_utils.preprocess import input_size
from hub_utils.provenance import PROVENANCE_COLUMNS, read_provenance

from .uploads import NamedImage

BATCH_CHUNK = 8  # images scored between two progress reports
SPEED_RUNS = 3  # timed runs per model at start, after one warm-up; the median is shown until faces are served
SPEED_WINDOW = 50  # the speed shown is the median over this many of the latest images served


class NoModelError(RuntimeError):
    """The Space has no usable model."""


def read_json(path: Path) -> Any:
    """A JSON file of a model folder, or None where it is missing."""
    return json.loads(path.read_text()) if path.is_file() else None


def milliseconds_per_face(detector: Detector) -> float:
    """This machine's median time for the model on one face-sized image (decoding, preprocessing, the model and its
    mirror view; no face search), after a warm-up run."""
    image = Image.new("RGB", (256, 256), (128, 128, 128))
    detector.predict([image], face_crop=False)
    times = []
    for _ in range(SPEED_RUNS):
        start = time.perf_counter()
        detector.predict([image], face_crop=False)
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1000, 1)


def read_card(folder: Path) -> tuple[dict[str, Any], str]:
    """A model card's metadata (YAML front matter) and its Markdown body; empty when the folder has no card."""
    path = folder / CARD_NAME
    if not path.is_file():
        return {}, ""
    try:
        card = ModelCard.load(path)
    except (ValueError, yaml.YAMLError) as error:
        raise ModelFolderError(f"{path}: the model card's YAML header cannot be read ({error}).") from None
    return card.data.to_dict(), card.text


class DetectorService:
    """The models of the Space, their ensemble, and what the UI and the API ask of them."""

    def __init__(self, ensemble: Ensemble | None, cards: dict[str, tuple[dict, str]], problems: list[str],
                 inconclusive_margin: float = INCONCLUSIVE_MARGIN, headline: str = "") -> None:
        self.ensemble = ensemble
        self.cards = cards
        self.problems = problems
        self.inconclusive_margin = inconclusive_margin
        names = [d.name for d in self.detectors]
        ensemble_ok = headline == ENSEMBLE_NAME and len(names) > 1
        self.headline = headline if headline in names or ensemble_ok else (names[0] if names else "")
        self.explainers = {d.name: GradCamExplainer(d) for d in self.detectors}
        self.start_ms = {d.name: milliseconds_per_face(d) for d in self.detectors}
        self.served_ms: dict[str, deque[float]] = {d.name: deque(maxlen=SPEED_WINDOW) for d in self.detectors}

    @classmethod
    def from_sources(cls, sources: Sequence[str], inconclusive_margin: float = INCONCLUSIVE_MARGIN,
                     headline: str = "") -> DetectorService:
        """Load every model once; a model that fails to load is reported in `problems`, not raised."""
        detectors: list[Detector] = []
        loaded: list[str] = []
        cards: dict[str, tuple[dict, str]] = {}
        problems: list[str] = []
        for source in sources:
            try:
                detector = load_detector(source)
                card = read_card(detector.folder)
            except ModelFolderError as error:
                problems.append(f"Model {source} could not be loaded: {error}")
                continue
            if detector.name in cards:
                problems.append(f"Model {source} was skipped: another model is already named {detector.name}.")
                continue
            detectors.append(detector)
            loaded.append(source)
            cards[detector.name] = card
        if not detectors:
            return cls(None, cards, problems, inconclusive_margin, headline)
        return cls(Ensemble(detectors, ensemble_threshold(loaded, detectors)), cards, problems, inconclusive_margin,
                   headline)

    @property
    def detectors(self) -> list[Detector]:
        return self.ensemble.detectors if self.ensemble else []

    def notices(self) -> list[str]:
        """Plain sentences about the state of the models, shown at the top of the page."""
        notices = list(self.problems)
        if not self.detectors:
            notices.append("No detection model is installed, so images cannot be checked. Put a model folder "
                           "under models/ or set DEEPFAKE_MODELS, then restart.")
        notices += [f"Model {d.name} is untrained: its scores are meaningless and only show that the app works."
                    for d in self.detectors if not d.deepfake.trained]
        return notices

    def _require_models(self) -> Ensemble:
        if self.ensemble is None:
            raise NoModelError("No detection model is installed on this server, so nothing can be checked.")
        return self.ensemble

    def detect(self, data: bytes, name: str = "image") -> dict[str, Any]:
        """The ensemble's verdict and each model's score for one image file's bytes, and, beside them, what the file
        declares about its origin (`provenance`, never part of the score); raises `ImageError` for a bad image."""
        ensemble = self._require_models()
        image = load_image(data, name)  # decoded once, for the models and the watermark check
        result = ensemble.predict([image], [name])[0]
        self._record_speed(result)
        return {**self._result_json(result), "provenance": read_provenance(data, image).to_dict()}

    def _record_speed(self, result: EnsembleResult) -> None:
        """Each model's time per face on an image this server just scored."""
        for model, seconds in result.seconds.items():
            self.served_ms[model].append(1000 * seconds / max(1, len(result.members[model].faces)))

    def speed(self, name: str) -> dict[str, Any]:
        """A model's milliseconds per face on this server: the median over the latest images served (face search
        and each model's own preprocessing included; decoding excluded), or, before any, its start-up timing."""
        served = self.served_ms[name]
        if served:
            return {"ms_per_face": round(statistics.median(served), 1), "basis": "served", "images": len(served)}
        return {"ms_per_face": self.start_ms[name], "basis": "start-up", "images": SPEED_RUNS}

    @property
    def headline_threshold(self) -> float:
        """The decision threshold of the headline: its model's own, or the ensemble's."""
        ensemble = self._require_models()
        if self.headline == ENSEMBLE_NAME:
            return ensemble.threshold
        return next(d.threshold for d in ensemble.detectors if d.name == self.headline)

    def _lead(self, result: EnsembleResult) -> ImageScore:
        return result.ensemble if self.headline == ENSEMBLE_NAME else result.members[self.headline]

    def _result_json(self, result: EnsembleResult) -> dict[str, Any]:
        lead, threshold = self._lead(result), self.headline_threshold
        probability = lead.fake_probability
        verdict = verdict_for(probability, threshold)
        detectors = {d.name: d for d in self.detectors}
        models = {name: _model_json(score, detectors[name], self.inconclusive_margin)
                  for name, score in result.members.items()}
        return {
            "headline": self.headline,
            "verdict": verdict,
            "fake_probability": probability,
            "threshold": threshold,
            "inconclusive": is_inconclusive(probability, threshold, self.inconclusive_margin),
            "agreeing": sum(model["verdict"] == verdict and not model["inconclusive"] for model in models.values()),
            "face_found": lead.face_found,
            "faces": [{"face": f.face + 1, "box": list(f.box), "fake_probability": f.fake_probability,
                       "verdict": f.verdict} for f in lead.faces if f.face is not None],
            "models": models,
        }

    def detect_batch(self, images: Sequence[NamedImage],
                     report: Callable[[int, int], None] | None = None) -> tuple[list[str], list[list[Any]]]:
        """Column names and one row per scored face (or per unreadable file), reporting progress per chunk."""
        ensemble = self._require_models()
        rows: list[list[Any]] = []
        for start in range(0, len(images), BATCH_CHUNK):
            chunk = images[start:start + BATCH_CHUNK]
            for image, result in zip(chunk, ensemble.predict([i.data for i in chunk], [i.name for i in chunk])):
                if not result.error:
                    self._record_speed(result)
                provenance = list(read_provenance(image.data).to_columns().values())
                rows.extend([*row, *provenance] for row in self._batch_rows(result))
            if report:
                report(start + len(chunk), len(images))
        return self.batch_columns, rows

    @property
    def batch_columns(self) -> list[str]:
        """The batch table's columns: file, face (numbered from 1), each model's P(fake), the mean when it leads,
        the headline's verdict, a note, and what the file declares about its origin."""
        combined = [ENSEMBLE_NAME] if self.headline == ENSEMBLE_NAME else []
        return ["file", "face", *[d.name for d in self.detectors], *combined, "verdict", "note", *PROVENANCE_COLUMNS]

    def _batch_rows(self, result: EnsembleResult) -> list[list[Any]]:
        name = result.ensemble.name
        combined = self.headline == ENSEMBLE_NAME
        if result.error:
            return [[name, "", *[None] * (len(self.detectors) + combined), "error", result.error]]
        lead, threshold = self._lead(result), self.headline_threshold
        rows = []
        for index, face in enumerate(lead.faces):
            members = [round(result.member_probability(d.name, index, len(lead.faces)), 4) for d in self.detectors]
            inconclusive = is_inconclusive(face.fake_probability, threshold, self.inconclusive_margin)
            note = "; ".join(n for n, on in (("no face found, whole image scored", face.face is None),
                                             ("inconclusive", inconclusive)) if on)
            label = "whole image" if face.face is None else face.face + 1
            mean = [round(face.fake_probability, 4)] if combined else []
            rows.append([name, label, *members, *mean, face.verdict, note])
        return rows

    def models(self) -> dict[str, Any]:
        """Metadata of every model (config and card) and of the ensemble, as JSON."""
        return {
            "models": [self._model_metadata(d) for d in self.detectors],
            "headline": self.headline,
            "ensemble": {"threshold": self.ensemble.threshold if self.ensemble else None,
                         "members": [d.name for d in self.detectors]},
            "notices": self.notices(),
        }

    def _model_metadata(self, detector: Detector) -> dict[str, Any]:
        card_data, card_body = self.cards.get(detector.name, ({}, ""))
        deepfake, folder = detector.deepfake, detector.folder
        evaluation = read_json(folder / EVALUATION_NAME)
        left_out = read_json(folder / LEAVE_ONE_OUT_NAME)
        return {
            "name": detector.name, "revision": detector.revision, "architecture": detector.config["architecture"],
            "kind": deepfake.kind, "kind_label": deepfake.model_kind.label,
            "frozen_backbone": not deepfake.model_kind.holds_all_weights, "input_size": input_size(detector.config),
            "parameters": sum(p.numel() for p in detector.model.parameters()),
            "weights_bytes": (folder / WEIGHTS_NAME).stat().st_size, "speed": self.speed(detector.name),
            "trained": deepfake.trained, "threshold": deepfake.threshold, "preprocessing": deepfake.preprocessing,
            "test_time_flip": deepfake.test_time_flip,
            "face_crop": {"enabled": deepfake.face_crop.enabled, "margin": deepfake.face_crop.margin},
            "training_data": _training_data_summary(deepfake.training_data),
            "test": _test_summary(evaluation) if evaluation else None,
            "leave_one_out": left_out, "license": card_data.get("license"),
            "model_index": card_data.get("model-index", []), "card": card_body,
        }

    def plot_files(self, name: str) -> dict[str, Path]:
        """The pictures a model's card links to (`![...](roc.png)`), by file name, from its folder."""
        folder = next(d.folder for d in self.detectors if d.name == name)
        return {path.name: path for path in sorted(folder.glob("*.png"))}

    def explain(self, image: ImageInput, max_regions: int) -> dict[str, list[RegionExplanation]]:
        """Grad-CAM and spectrum pictures of the largest faces, for every model."""
        rgb = load_image(image)
        return {name: explainer.explain(rgb, max_regions) for name, explainer in self.explainers.items()}


def _training_data_summary(training_data: dict[str, Any]) -> dict[str, Any]:
    """What a model was trained on, as people read it: source names, images per split, held-out generators."""
    splits = training_data.get("splits", {})
    return {"sources": training_data.get("sources", []),
            "images": {split: sum(counts.values()) for split, counts in splits.items()},
            "held_out": training_data.get("held_out", []), "excluded": training_data.get("excluded", [])}


def _test_summary(evaluation: dict[str, Any]) -> dict[str, Any]:
    """The test report's headline: images, sources, threshold, balanced accuracy, ROC-AUC and real recall."""
    return {"setting": evaluation.get("setting"), "split": evaluation.get("split"), "n": evaluation["n"],
            "sources": len(evaluation.get("per_source", {})),
            "balanced_accuracy": evaluation["balanced_accuracy"], "roc_auc": evaluation["roc_auc"],
            "real_recall": evaluation["per_class"]["real"]["recall"]}


def _model_json(score: ImageScore, detector: Detector, margin: float) -> dict[str, Any]:
    """One model's score of an image: its most fake face, judged against the model's own threshold."""
    probability = score.fake_probability
    return {"fake_probability": probability, "verdict": verdict_for(probability, detector.threshold),
            "threshold": detector.threshold, "inconclusive": is_inconclusive(probability, detector.threshold, margin),
            "revision": detector.revision, "trained": detector.deepfake.trained}
