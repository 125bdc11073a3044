"""Frozen-backbone features of training images, computed once through the detector's own path and cached on disk.

A view of an image (as stored, neutrally re-encoded, or perturbed) goes through `Detector.regions` and
`Detector.preprocess` exactly as at inference; its largest region and that region's mirror image then go through the
backbone, and the class and mean patch tokens after every block are kept (`feature_model.block_tokens`), so that any
choice of blocks and tokens is a column selection. A head trained on these sees what `Detector.predict` computes.

Cache: one float32 `.npy` of shape (2 views: as is and mirrored, depth, 2 tokens, width) per image view, under a
folder named by everything that decides it (backbone digest, preprocessing, face settings).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from hub_utils.detector import Detector
from hub_utils.faces import FaceSettings
from hub_utils.feature_model import (
    FrozenBackbone,
    FrozenFeatureClassifier,
    block_tokens,
    create_frozen_backbone,
    select_features,
)
from hub_utils.images import content_hash
from hub_utils.kinds import FROZEN_HEAD, kind_of
from hub_utils.model_folder import DeepfakeConfig, load_external_weights


class FeatureCache:
    """Block tokens per image view for one detector of the frozen_head kind (its backbone, with its face settings)."""

    def __init__(self, detector: Detector, folder: str | Path, batch_size: int = 32) -> None:
        if kind_of(detector.model) != FROZEN_HEAD.name:
            raise TypeError(f"features are cached for {FROZEN_HEAD.name} detectors only")
        self.detector = detector
        self.model: FrozenFeatureClassifier = detector.model
        self.depth = len(self.model.backbone.blocks)
        self.blocks = tuple(range(1, self.depth + 1))
        self.folder = Path(folder) / self.key()
        self.batch_size = batch_size

    def key(self) -> str:
        """A digest of everything that decides a view's tokens besides its pixels."""
        cfg = self.detector.config["pretrained_cfg"]
        faces = self.detector.deepfake.face_crop
        decided = {"weights": self.model.spec.weights_sha256, "architecture": self.detector.config["architecture"],
                   "input": [cfg.get(k)
                             for k in ("input_size", "interpolation", "crop_pct", "crop_mode", "mean", "std")],
                   "preprocessing": self.detector.deepfake.preprocessing,
                   "faces": asdict(faces) if faces.enabled else "whole image", "format": 1}
        return hashlib.sha256(json.dumps(decided, sort_keys=True, default=list).encode()).hexdigest()[:20]

    def _path(self, image_key: str) -> Path:
        return self.folder / image_key[:2] / f"{image_key}.npy"

    def tokens(self, images: Sequence[Image.Image], desc: str = "features") -> list[np.ndarray]:
        """Per RGB image, (regions, 2, depth, 2, width): every region the detector scores (largest face first), as is
        and mirrored; computed where not cached."""
        keys = [content_hash(image) for image in images]
        missing = [i for i, key in enumerate(keys) if not self._path(key).is_file()]
        progress = tqdm(total=len(missing), desc=desc, unit="img", file=sys.stderr, disable=not missing)
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start:start + self.batch_size]
            regions = [[self.detector.preprocess(region) for region, _ in self.detector.regions(images[i])]
                       for i in chunk]
            tokens = self._compute(torch.cat([torch.cat(r) for r in regions]))
            offsets = np.cumsum([0] + [len(r) for r in regions])
            for n, i in enumerate(chunk):
                self._store(keys[i], tokens[offsets[n]:offsets[n + 1]])
            progress.update(len(chunk))
        progress.close()
        return [np.load(self._path(key)) for key in keys]

    @torch.inference_mode()
    def _compute(self, batch: torch.Tensor) -> np.ndarray:
        device = next(self.model.parameters()).device
        batch = batch.to(device)
        views = [block_tokens(self.model.backbone, view, self.blocks).float().cpu() for view in (batch, batch.flip(-1))]
        return torch.stack(views, dim=1).numpy()

    def _store(self, key: str, tokens: np.ndarray) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.partial")
        with open(partial, "wb") as handle:
            np.save(handle, tokens.astype(np.float32))
        os.replace(partial, path)


def head_inputs(tokens: np.ndarray, spec: FrozenBackbone, mirrored: bool) -> np.ndarray:
    """(R, F) head inputs from cached tokens (R, 2, depth, 2, width): the spec's blocks and tokens, averaged over the
    region and its mirror image when the detector scores both (a linear head's mean logit is the logit of the mean
    features, as `Detector.fake_logits` averages them)."""
    views = torch.from_numpy(tokens)
    views = views.mean(dim=1) if mirrored else views[:, 0]
    return select_features(views, spec, tuple(range(1, views.shape[1] + 1))).numpy()


def frozen_detector(architecture: str, spec: FrozenBackbone, face_crop: FaceSettings, pretrained_cfg: dict,
                    weights_source: str | None = None) -> Detector:
    """A detector around an untrained head on the backbone (weights found by `resolve_backbone_weights`), with the
    face settings and preprocessing it will keep once trained."""
    model = FrozenFeatureClassifier(create_frozen_backbone(architecture, pretrained_cfg), spec)
    config = {"architecture": architecture, "num_classes": 2, "pretrained_cfg": model.pretrained_cfg}
    load_external_weights(model, config, source=weights_source)
    deepfake = DeepfakeConfig(kind=FROZEN_HEAD.name, face_crop=face_crop, backbone=spec)
    return Detector(model, config, deepfake, "training")
