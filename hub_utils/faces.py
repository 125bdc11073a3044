"""Face boxes and 5 landmarks (eyes, nose, mouth corners) from the MTCNN weights that facenet-pytorch ships.

Results are cached by image content hash, in memory and optionally on disk, so several models, the training
loader and the blackout augmentation all reuse one detection per picture.
"""
from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .images import content_hash

DETECTION_MAX_SIDE = 640
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
    """MTCNN face detection with a content-hash cache (memory LRU, plus a folder of JSON files if given)."""

    def __init__(self, cache_dir: str | Path | None = None, memory_items: int = 4096) -> None:
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

            self._mtcnn = MTCNN(keep_all=True, device="cpu", min_face_size=FaceSettings().min_face_size)
        return self._mtcnn

    def _detect(self, image: Image.Image) -> list[Face]:
        scale = min(1.0, DETECTION_MAX_SIDE / max(image.size))
        small = image if scale == 1.0 else image.resize(
            (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BILINEAR)
        if min(small.size) < FaceSettings().min_face_size:
            return []  # no face of the smallest size MTCNN looks for fits (a strip, once shrunk for detection)
        with self._lock:
            boxes, probs, points = self._detector().detect(small, landmarks=True)
        if boxes is None:
            return []
        boxes = np.asarray(boxes, dtype=np.float64) / scale
        points = np.asarray(points, dtype=np.float64) / scale
        faces = [
            Face(tuple(float(v) for v in box), tuple((float(x), float(y)) for x, y in marks), float(prob))
            for box, prob, marks in zip(boxes, np.asarray(probs, dtype=np.float64), points)
            if prob >= MIN_CONFIDENCE
        ]
        return sorted(faces, key=lambda face: -(face.box[2] - face.box[0]) * (face.box[3] - face.box[1]))

    def find(self, image: Image.Image, key: str | None = None) -> list[Face]:
        """Faces in an RGB image, largest first; `key` overrides the content hash as cache key."""
        key = key or content_hash(image)
        if key in self._memory:
            self._memory.move_to_end(key)
            return self._memory[key]
        faces = self._read_disk(key)
        if faces is None:
            faces = self._detect(image)
            self._write_disk(key, faces)
        self._memory[key] = faces
        if len(self._memory) > self._memory_items:
            self._memory.popitem(last=False)
        return faces

    def _read_disk(self, key: str) -> list[Face] | None:
        path = self._cache_dir / f"{key}.json" if self._cache_dir else None
        if path is None or not path.is_file():
            return None
        return [Face(tuple(f["box"]), tuple(map(tuple, f["landmarks"])), f["score"]) for f in json.loads(path.read_text())]

    def _write_disk(self, key: str, faces: list[Face]) -> None:
        if self._cache_dir is None:
            return
        tmp = self._cache_dir / f"{key}.json.tmp"
        tmp.write_text(json.dumps([asdict(face) for face in faces]))
        tmp.replace(self._cache_dir / f"{key}.json")


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


def face_regions(image: Image.Image, faces: list[Face], settings: FaceSettings) -> list[tuple[Image.Image, Face | None, np.ndarray | None]]:
    """What a model scores: one crop per usable face, or the whole image (face None) when there is none."""
    usable = [f for f in faces if min(f.box[2] - f.box[0], f.box[3] - f.box[1]) >= settings.min_face_size]
    if not settings.enabled or not usable:
        return [(image, None, None)]
    regions = []
    for face in usable:
        crop, landmarks = crop_face(image, face, settings.margin)
        regions.append((crop, face, landmarks))
    return regions
