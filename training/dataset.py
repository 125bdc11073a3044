"""Training samples: image -> (sometimes) neutral re-encoding -> the detector's face crop -> augmentation."""
from __future__ import annotations

import random
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import datasets
import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from hub_utils.faces import Face, FaceFinder, FaceSettings, face_regions
from hub_utils.images import ImageError, load_image
from training.data import raw_image_bytes
from training.perturb import NEUTRAL_SIZE, neutral_reencode

Augment = Callable[[np.ndarray, np.ndarray | None], torch.Tensor]


def image_of(row: dict[str, Any]) -> Image.Image:
    """The row's image as RGB through the detector's own safe loader."""
    image = row["image"]
    return load_image(raw_image_bytes(image) if isinstance(image, dict) else image, row.get("path") or "image")


def neutral_face(face: Face, size: tuple[int, int]) -> Face:
    """A face's box and landmarks after `neutral_reencode` (shorter side to 256, centre crop)."""
    scale = NEUTRAL_SIZE / min(size)
    left = (round(size[0] * scale) - NEUTRAL_SIZE) // 2
    top = (round(size[1] * scale) - NEUTRAL_SIZE) // 2
    x0, y0, x1, y1 = face.box
    box = (x0 * scale - left, y0 * scale - top, x1 * scale - left, y1 * scale - top)
    marks = tuple((x * scale - left, y * scale - top) for x, y in face.landmarks)
    return replace(face, box=box, landmarks=marks)


class FaceCropDataset(torch.utils.data.Dataset):
    """(tensor, label) pairs; faces come from the shared content-hash cache, the largest face is the sample."""

    def __init__(self, dataset: datasets.Dataset, augment: Augment, face_settings: FaceSettings,
                 face_cache: str | None, neutral_p: float) -> None:
        self.dataset = dataset
        self.labels = np.asarray(dataset["label"])
        self.augment = augment
        self.face_settings = face_settings
        self.face_cache = face_cache
        self.neutral_p = neutral_p
        self._finder: FaceFinder | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def finder(self) -> FaceFinder:
        if self._finder is None:  # one per DataLoader worker
            self._finder = FaceFinder(self.face_cache)
        return self._finder

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        row = self.dataset[int(index)]
        try:
            image = image_of(row)
        except ImageError:  # unusable rows are dropped before training; stay robust to a late surprise
            image = Image.new("RGB", (64, 64))
        faces = self.finder.find(image)
        if random.random() < self.neutral_p:
            faces = [neutral_face(face, image.size) for face in faces]
            image = neutral_reencode(image)
        region, _, landmarks = face_regions(image, faces, self.face_settings)[0]
        return self.augment(np.asarray(region), landmarks), int(self.labels[index])


def cache_faces(dataset: datasets.Dataset, finder: FaceFinder) -> Counter[str]:
    """Detect every row's faces once, as stored and neutrally re-encoded, into `finder`'s cache: the lookups that
    training, validation and evaluation make. Counts the rows with a face, without one, and unreadable."""
    counts: Counter[str] = Counter()
    undecoded = dataset.cast_column("image", datasets.Image(decode=False))  # bad files reach our loader as bytes
    for row in tqdm(undecoded, desc="faces", file=sys.stderr):
        try:
            image = image_of(row)
        except ImageError:
            counts["unreadable"] += 1
            continue
        counts["with a face" if finder.find(image) else "without a face"] += 1
        finder.find(neutral_reencode(image))
    return counts


def balanced_weights(labels: np.ndarray, generators: list[str]) -> np.ndarray:
    """Sampling weights: each label half the draws; within a label, generators weighted by 1/sqrt(count)."""
    labels = np.asarray(labels)
    keys = [f"{label}/{generator}" for label, generator in zip(labels, generators)]
    key_counts = Counter(keys)
    weights = np.array([key_counts[key] ** -0.5 for key in keys], dtype=np.float64)
    for label in np.unique(labels):
        weights[labels == label] /= weights[labels == label].sum()
    return weights / weights.sum()


def seed_worker(worker_id: int) -> None:
    """Distinct, reproducible Python/numpy randomness per DataLoader worker."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
