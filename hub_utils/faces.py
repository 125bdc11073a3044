"""Face boxes and 5 landmarks (eyes, nose, mouth corners) from the MTCNN weights that facenet-pytorch ships.

Results are cached by image content hash, in memory and optionally on disk, so several models, the training
loader and the blackout augmentation all reuse one detection per picture.
"""
from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .images import content_hash

DETECTION_MAX_SIDE = 640
DETECTION_BATCH = 16  # images of one size that MTCNN takes in one call
MIN_CONFIDENCE = 0.9


@dataclass(frozen=True)
class Face:
    """A detected face: box (x0, y0, x1, y1) and landmarks (left eye, right eye, nose, mouth left, mouth right)."""

    box: tuple[float, float, float, float]
    landmarks: tuple[tuple[float, float], ...]
    score: float


@dataclass(frozen=True)
class FaceSettings:
    """How a model crops faces; stored in the model folder's `deepfake.face_crop`."""

    enabled: bool = True
    margin: float = 0.25
    min_face_size: int = 24


class FaceFinder:
    """MTCNN face detection on `device` with a content-hash cache (memory LRU, plus a folder of JSON files if given).

    MTCNN takes a batch of equal-size images only; images of other sizes are detected in separate calls, one per
    size, never letterboxed to a common size: its image pyramid depends on the input size, and a letterboxed batch
    moved boxes by up to 15 px (P(fake) by up to 0.09) against each image detected alone (docs/benchmarks.md)."""

    def __init__(self, cache_dir: str | Path | None = None, memory_items: int = 4096,
                 device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self._mtcnn = None
        self._lock = threading.Lock()
        self._memory: OrderedDict[str, list[Face]] = OrderedDict()
        self._memory_items = memory_items
        self._cache_dir = Path(cache_dir) if cache_dir else None
        if self._cache_dir:
            self._cache_dir.mkdir(parents=True, exist_ok=True)

    def _detector(self):
        if self._mtcnn is None:
            from facenet_pytorch import MTCNN

            self._mtcnn = MTCNN(keep_all=True, device=self.device, min_face_size=FaceSettings().min_face_size)
        return self._mtcnn

    @staticmethod
    def _detection_view(image: Image.Image) -> tuple[Image.Image, float] | None:
        """The image as MTCNN sees it (longer side at most DETECTION_MAX_SIDE) and its scale; None when even the
        smallest face MTCNN looks for cannot fit (a strip, once shrunk)."""
        scale = min(1.0, DETECTION_MAX_SIDE / max(image.size))
        small = image if scale == 1.0 else image.resize(
            (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BILINEAR)
        return None if min(small.size) < FaceSettings().min_face_size else (small, scale)

    def _detect_batch(self, views: list[tuple[Image.Image, float]]) -> list[list[Face]]:
        """MTCNN on images of one size in a single batched call; faces in original pixels, largest first."""
        with self._lock:
            boxes, probs, points = self._detector().detect([small for small, _ in views], landmarks=True)
        return [_faces(image_boxes, image_probs, image_points, scale)
                for image_boxes, image_probs, image_points, (_, scale) in zip(boxes, probs, points, views)]

    def find(self, image: Image.Image, key: str | None = None) -> list[Face]:
        """Faces in an RGB image, largest first; `key` overrides the content hash as cache key."""
        return self.find_many([image], [key] if key else None)[0]

    def find_many(self, images: Sequence[Image.Image], keys: Sequence[str] | None = None) -> list[list[Face]]:
        """`find` for several images: those not cached are detected in batches of one detection size each."""
        keys = list(keys) if keys is not None else [content_hash(image) for image in images]
        found: dict[str, list[Face]] = {}
        by_size: dict[tuple[int, int], list[tuple[str, tuple[Image.Image, float]]]] = {}
        for image, key in zip(images, keys):
            if key in found:
                continue
            cached = self._memory.get(key)
            cached = cached if cached is not None else self._read_disk(key)
            if cached is not None:
                found[key] = cached
                continue
            view = self._detection_view(image)
            if view is None:
                found[key] = []
                self._write_disk(key, [])
            else:
                by_size.setdefault(view[0].size, []).append((key, view))
        for group in by_size.values():
            for start in range(0, len(group), DETECTION_BATCH):
                chunk = group[start:start + DETECTION_BATCH]
                for (key, _), faces in zip(chunk, self._detect_batch([view for _, view in chunk])):
                    found[key] = faces
                    self._write_disk(key, faces)
        for key in keys:
            self._remember(key, found[key])
        return [found[key] for key in keys]

    def _remember(self, key: str, faces: list[Face]) -> None:
        self._memory[key] = faces
        self._memory.move_to_end(key)
        if len(self._memory) > self._memory_items:
            self._memory.popitem(last=False)

    def _read_disk(self, key: str) -> list[Face] | None:
        path = self._cache_dir / f"{key}.json" if self._cache_dir else None
        if path is None or not path.is_file():
            return None
        return [Face(tuple(f["box"]), tuple(map(tuple, f["landmarks"])), f["score"])
                for f in json.loads(path.read_text())]

    def _write_disk(self, key: str, faces: list[Face]) -> None:
        if self._cache_dir is None:
            return
        tmp = self._cache_dir / f"{key}.json.tmp"
        tmp.write_text(json.dumps([asdict(face) for face in faces]))
        tmp.replace(self._cache_dir / f"{key}.json")


def _faces(boxes: np.ndarray | None, probs: np.ndarray | None, points: np.ndarray | None, scale: float) -> list[Face]:
    """MTCNN's output for one image as confident faces in original pixels, largest first."""
    if boxes is None:
        return []
    boxes = np.asarray(boxes, dtype=np.float64) / scale
    points = np.asarray(points, dtype=np.float64) / scale
    faces = [Face(tuple(float(v) for v in box), tuple((float(x), float(y)) for x, y in marks), float(prob))
             for box, prob, marks in zip(boxes, np.asarray(probs, dtype=np.float64), points) if prob >= MIN_CONFIDENCE]
    return sorted(faces, key=lambda face: -(face.box[2] - face.box[0]) * (face.box[3] - face.box[1]))


def crop_box(face: Face, size: tuple[int, int], margin: float) -> tuple[int, int, int, int]:
    """Square box around the face, enlarged by `margin` of its side on each side, shifted to stay in the image."""
    width, height = size
    x0, y0, x1, y1 = face.box
    side = min(max(x1 - x0, y1 - y0) * (1 + 2 * margin), width, height)
    cx = min(max((x0 + x1) / 2, side / 2), width - side / 2)
    cy = min(max((y0 + y1) / 2, side / 2), height - side / 2)
    left, top = round(cx - side / 2), round(cy - side / 2)
    side = round(side)
    return left, top, min(left + side, width), min(top + side, height)


def crop_face(image: Image.Image, face: Face, margin: float) -> tuple[Image.Image, np.ndarray]:
    """The face crop and its landmarks (5x2) in crop pixel coordinates."""
    left, top, right, bottom = crop_box(face, image.size, margin)
    landmarks = np.asarray(face.landmarks, dtype=np.float32) - np.asarray([left, top], dtype=np.float32)
    return image.crop((left, top, right, bottom)), landmarks


def face_regions(image: Image.Image, faces: list[Face], settings: FaceSettings
                 ) -> list[tuple[Image.Image, Face | None, np.ndarray | None]]:
    """What a model scores: one crop per usable face, or the whole image (face None) when there is none."""
    usable = [f for f in faces if min(f.box[2] - f.box[0], f.box[3] - f.box[1]) >= settings.min_face_size]
    if not settings.enabled or not usable:
        return [(image, None, None)]
    regions = []
    for face in usable:
        crop, landmarks = crop_face(image, face, settings.margin)
        regions.append((crop, face, landmarks))
    return regions
