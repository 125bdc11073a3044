"""MTCNN faces from packaged weights: boxes, 5 landmarks, square crops, the content-hash cache."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hub_utils.faces import Face, FaceFinder, FaceSettings, crop_box, crop_face, face_regions


def test_astronaut_face_and_landmarks(astronaut: Image.Image) -> None:
    faces = FaceFinder().find(astronaut)
    assert len(faces) == 1
    x0, y0, x1, y1 = faces[0].box
    assert 150 < x0 < 220 and 40 < y0 < 110 and 240 < x1 < 300 and 150 < y1 < 220  # Eileen Collins' face
    (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = faces[0].landmarks
    assert lx < rx and mlx < mrx  # left before right
    assert max(ly, ry) < ny < min(mly, mry)  # eyes above nose above mouth
    assert all(x0 <= x <= x1 and y0 <= y <= y1 for x, y in faces[0].landmarks)


def test_no_face_in_noise() -> None:
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8))
    assert FaceFinder().find(noise) == []


@pytest.mark.parametrize("size", [(20000, 32), (32, 20000), (2000, 70)])
def test_a_strip_too_thin_to_hold_a_face_once_shrunk_has_none(size: tuple[int, int]) -> None:
    strip = Image.fromarray(np.random.default_rng(1).integers(0, 255, size[::-1] + (3,), dtype=np.uint8))
    assert FaceFinder().find(strip) == []


def test_several_faces_are_found_largest_first(astronaut: Image.Image) -> None:
    canvas = Image.new("RGB", (1000, 520), "grey")
    canvas.paste(astronaut, (0, 0))
    canvas.paste(astronaut.resize((300, 300)), (650, 100))
    faces = FaceFinder().find(canvas)
    assert len(faces) == 2
    areas = [(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]) for f in faces]
    assert areas[0] > areas[1] and faces[1].box[0] > 650


def test_disk_cache_is_reused(astronaut: Image.Image, tmp_path: Path) -> None:
    first = FaceFinder(tmp_path).find(astronaut)
    assert len(list(tmp_path.glob("*.json"))) == 1
    again = FaceFinder(tmp_path)
    again._detect = lambda image: pytest.fail("detection ran although the cache holds the answer")
    assert again.find(astronaut) == first


def test_mtcnn_is_built_on_the_finders_device() -> None:
    assert FaceFinder().device == torch.device("cpu")  # as before
    finder = FaceFinder(device="meta")  # a device every machine has; CUDA below
    assert {parameter.device.type for parameter in finder._detector().parameters()} == {"meta"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_faces_found_on_cuda_are_those_found_on_the_cpu(astronaut: Image.Image, lfw_faces: list[Image.Image]) -> None:
    pictures = [astronaut, astronaut.resize((300, 300)), *lfw_faces]
    on_cpu, on_cuda = FaceFinder().find_many(pictures), FaceFinder(device="cuda").find_many(pictures)
    assert sum(map(len, on_cpu)) >= 2
    for cpu_faces, cuda_faces in zip(on_cpu, on_cuda):
        assert len(cpu_faces) == len(cuda_faces)
        for a, b in zip(cpu_faces, cuda_faces):
            assert max(abs(x - y) for x, y in zip(a.box, b.box)) < 1.0


def test_crop_is_square_inside_the_image_with_landmarks_moved() -> None:
    face = Face((80.0, 10.0, 120.0, 60.0),
                ((90.0, 30.0), (110.0, 30.0), (100.0, 40.0), (92.0, 50.0), (108.0, 50.0)), 0.99)
    left, top, right, bottom = crop_box(face, (128, 100), 0.25)
    assert right - left == bottom - top and 0 <= left and right <= 128 and 0 <= top and bottom <= 100
    crop, landmarks = crop_face(Image.new("RGB", (128, 100)), face, 0.25)
    assert crop.size == (right - left, bottom - top)
    np.testing.assert_allclose(landmarks[0], [90 - left, 30 - top])


def test_regions_fall_back_to_the_whole_image() -> None:
    image = Image.new("RGB", (64, 64))
    tiny = Face((1.0, 1.0, 9.0, 9.0), ((2.0, 2.0),) * 5, 0.99)
    assert face_regions(image, [tiny], FaceSettings(min_face_size=24))[0][1] is None
    assert face_regions(image, [], FaceSettings())[0][0] is image
