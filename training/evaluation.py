"""Evaluation of detectors through the one inference path, overall and per generator, source, processing and
perturbation: the steps of `training.evaluate`, which the benchmarks reuse.

One prediction per image (as fake as its most fake face); several models are also scored as their ensemble.
"""
from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from hub_utils.card import write_model_card
from hub_utils.constants import EVALUATION_NAME, SEEN_IMAGES_NAME
from hub_utils.ensemble import ENSEMBLE_NAME, Ensemble
from training.calibrate import best_threshold
from training.data import DataError
from training.dataset import image_of
from training.deepfake_metrics import compute_metrics
from training.perturb import iter_perturbations, neutral_reencode
from training.quality import processing_matched_sources
from training.split import split_dataset

SUMMARY_KEYS = ("n", "accuracy", "balanced_accuracy", "roc_auc", "average_precision")


def select_split(dataset: datasets.Dataset, split: str | None, split_seed: int) -> datasets.Dataset:
    """Every image, or one split of the loader's."""
    if split:
        splits = split_dataset(dataset, seed=split_seed)
        if split not in splits:
            raise DataError(f"--split {split!r}: choose one of {', '.join(splits)}.")
        dataset = splits[split]
    return dataset


def skip_seen(dataset: datasets.Dataset, folders: Sequence[str]) -> datasets.Dataset:
    """`dataset` without the images any of the local model `folders` trained on, or was calibrated on unless those
    are all images of `dataset` itself (a validation evaluation of a model calibrated on that split): so that models
    trained on other splits are scored on images none of them saw. Each folder lists them in `seen_images.json`."""
    evaluated = set(dataset["path"])
    seen: set[str] = set()
    for folder in folders:
        path = Path(folder) / SEEN_IMAGES_NAME
        if Path(folder).is_dir() and not path.is_file():
            raise DataError(f"{folder}: no {SEEN_IMAGES_NAME}, so the images it saw cannot be skipped.")
        if path.is_file():
            record = json.loads(path.read_text())
            seen.update(record["trained"])
            if not set(record["calibrated"]) <= evaluated:
                seen.update(record["calibrated"])
    return dataset.filter(lambda path: path not in seen, input_columns="path")


def score_images(ensemble: Ensemble, images: Sequence[Image.Image], desc: str,
                 batch_size: int = 32) -> dict[str, np.ndarray]:
    """Image-level P(fake) per member and for the ensemble (NaN where an image could not be scored)."""
    names = [d.name for d in ensemble.detectors] + [ENSEMBLE_NAME]
    scores: dict[str, list[float]] = {name: [] for name in names}
    for start in tqdm(range(0, len(images), batch_size), desc=desc, file=sys.stderr, leave=False):
        for result in ensemble.predict(images[start:start + batch_size], batch_size=batch_size):
            for name, score in [*result.members.items(), (ENSEMBLE_NAME, result.ensemble)]:
                scores[name].append(np.nan if score.error else score.fake_probability)
    return {name: np.asarray(values) for name, values in scores.items()}


def subset_summary(labels: np.ndarray, scores: np.ndarray, threshold: float, mask: np.ndarray) -> dict[str, Any]:
    """Accuracy on the subset; AUC/AP of the subset against every image of the other class."""
    label_values = np.unique(labels[mask])
    auc_mask = mask | (labels != label_values[0]) if len(label_values) == 1 else mask
    summary = compute_metrics(labels[auc_mask], scores[auc_mask], threshold)
    summary["n"] = int(mask.sum())
    summary["accuracy"] = float(np.mean((scores[mask] >= threshold) == labels[mask]))
    if len(label_values) == 1:
        summary["balanced_accuracy"] = summary["accuracy"]
    return {key: summary[key] for key in SUMMARY_KEYS}


def build_report(labels: np.ndarray, scores: np.ndarray, threshold: float,
                 columns: dict[str, list[str]]) -> dict[str, Any]:
    """Overall metrics plus breakdowns by each metadata column."""
    valid = ~np.isnan(scores)
    labels, scores = labels[valid], scores[valid]
    report = compute_metrics(labels, scores, threshold)
    report["unscored"] = int((~valid).sum())
    for column, values in columns.items():
        values = np.asarray(values)[valid]
        report[f"per_{column}"] = {value: subset_summary(labels, scores, threshold, values == value)
                                   for value in sorted(set(values))}
    return report


def evaluate(ensemble: Ensemble, dataset: datasets.Dataset, neutral: bool, perturbations: str | None,
             matched_sources: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Reports keyed by model name (and `ensemble` when there are several models).

    `matched_sources` defaults to the processing-matched sources of `dataset` itself.
    """
    labels = np.asarray(dataset["label"])
    matched = set(processing_matched_sources(dataset) if matched_sources is None else matched_sources)
    columns = {"generator": list(dataset["generator"]), "source": list(dataset["source"]),
               "processing": ["matched" if source in matched else "mixed" for source in dataset["source"]]}
    images = [image_of(row) for row in tqdm(dataset, desc="loading", file=sys.stderr, leave=False)]
    if neutral:
        images = [neutral_reencode(image) for image in images]
    thresholds = {d.name: d.threshold for d in ensemble.detectors} | {ENSEMBLE_NAME: ensemble.threshold}
    base = score_images(ensemble, images, "scoring")
    reports = {name: build_report(labels, scores, thresholds[name], columns) for name, scores in base.items()}
    for name, severity, perturb in iter_perturbations(perturbations) if perturbations else []:
        perturbed = score_images(ensemble, [perturb(image) for image in images], f"{name}/{severity}")
        for model, scores in perturbed.items():
            reports[model].setdefault("per_perturbation", {})[f"{name}/{severity}"] = {
                key: build_report(labels, scores, thresholds[model], {})[key] for key in SUMMARY_KEYS}
    for name, report in reports.items():
        report.update(model=name, setting="neutral" if neutral else "raw", scores=base[name].tolist(),
                      labels=labels.tolist())
    if len(ensemble.detectors) == 1:
        reports.pop(ENSEMBLE_NAME)
    return reports


def update_card(folder: Path, report: dict[str, Any], split: str | None, plots: Path) -> None:
    """Store the evaluation and its plots in the model folder and regenerate its card with them."""
    for plot in plots.glob("*.png"):
        shutil.copy(plot, folder / plot.name)
    record = {key: value for key, value in report.items() if key not in ("scores", "labels")}
    record["split"] = split or "all"
    record["headline"] = {f"{split or 'all'}_{report['setting']}": {**{k: record[k] for k in SUMMARY_KEYS},
                                                                    "threshold": record["threshold"],
                                                                    "split": split or "all"}}
    path = folder / EVALUATION_NAME
    if path.is_file():  # keep other settings (raw / neutral) already recorded
        previous = json.loads(path.read_text())
        record["headline"] = {**previous.get("headline", {}), **record["headline"]}
    path.write_text(json.dumps(record, indent=2) + "\n")
    write_model_card(folder)


def write_ensemble(path: Path, members: Sequence[str], report: dict[str, Any], split: str | None) -> float:
    """The threshold that maximises the ensemble's balanced accuracy on the evaluated images, saved with its members."""
    scores, labels = np.asarray(report["scores"]), np.asarray(report["labels"])
    valid = ~np.isnan(scores)
    threshold = best_threshold(scores[valid], labels[valid])
    record = {"members": [Path(m).name for m in members], "threshold": threshold,
              "chosen_on": {"split": split or "all", "setting": report["setting"], "n": int(valid.sum()),
                            **compute_metrics(labels[valid], scores[valid], threshold)}}
    path.write_text(json.dumps(record, indent=2) + "\n")
    return threshold
