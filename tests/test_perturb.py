"""Tests for training.perturb: each perturbation does what the challenge specifies, deterministically."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from training.perturb import (
    PERTURBATIONS,
    PerturbationError,
    apply_perturbation,
    iter_perturbations,
    neutral_reencode,
    perturbed_examples,
)


@pytest.fixture
def photo() -> Image.Image:
    """A 120x90 textured RGB image with an asymmetric bright corner."""
    rng = np.random.default_rng(0)
    array = rng.integers(0, 200, (90, 120, 3), dtype=np.uint8)
    array[:20, :30] = 255
    return Image.fromarray(array)


def as_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float64)


def quantization_of(quality: int) -> dict:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, format="JPEG", quality=quality)
    return Image.open(buffer).quantization


def test_every_name_and_severity():
    assert set(PERTURBATIONS) == {"rotation", "mirror", "blur", "scale", "upscale", "crop", "jpeg"}
    for name, ladder in PERTURBATIONS.items():
        assert list(ladder) == (["medium"] if name == "upscale" else ["mild", "medium", "strong"])


@pytest.mark.parametrize(("name", "severity"), [(n, s) for n, ladder in PERTURBATIONS.items() for s in ladder])
def test_deterministic_rgb_and_changes_the_image(photo, name, severity):
    first = apply_perturbation(photo, name, severity)
    second = apply_perturbation(photo, name, severity)
    assert first.mode == "RGB"
    np.testing.assert_array_equal(as_array(first), as_array(second))
    assert first.size != photo.size or np.abs(as_array(first) - as_array(photo)).mean() > 0.5


@pytest.mark.parametrize(("severity", "degrees"), [("mild", 5), ("medium", 15), ("strong", 30)])
def test_rotation_angle_and_size(severity, degrees):
    array = np.zeros((101, 101, 3), np.uint8)
    array[50, 90] = 255  # 40 px right of the centre
    rotated = apply_perturbation(Image.fromarray(array), "rotation", severity)
    assert rotated.size == (101, 101)
    grey = as_array(rotated).mean(axis=2)
    ys, xs = np.nonzero(grey > 0)
    weights = grey[ys, xs]
    y, x = np.average(ys, weights=weights), np.average(xs, weights=weights)
    assert np.degrees(np.arctan2(50 - y, x - 50)) == pytest.approx(degrees, abs=0.5)  # counter-clockwise


def test_rotation_fills_borders_by_reflection(photo):
    corners = as_array(apply_perturbation(photo, "rotation", "strong"))[[0, 0, -1, -1], [0, -1, 0, -1]]
    assert (corners.sum(axis=1) > 0).all()  # no black wedges


@pytest.mark.parametrize(("severity", "flip"), [("mild", np.fliplr), ("medium", np.fliplr), ("strong", np.flipud)])
def test_mirror(photo, severity, flip):
    np.testing.assert_array_equal(as_array(apply_perturbation(photo, "mirror", severity)), flip(as_array(photo)))


@pytest.mark.parametrize(("severity", "sigma"), [("mild", 0.5), ("medium", 1.0), ("strong", 2.0)])
def test_blur_sigma(severity, sigma):
    array = np.zeros((41, 41, 3), np.uint8)
    array[20, 20] = 255
    grey = as_array(apply_perturbation(Image.fromarray(array), "blur", severity))[..., 0]
    profile = grey.sum(axis=0)
    offsets = np.arange(41) - 20
    measured = np.sqrt((profile * offsets**2).sum() / profile.sum())
    assert measured == pytest.approx(sigma, rel=0.2, abs=0.12)


@pytest.mark.parametrize(("name", "severity", "factor"),
                         [("scale", "mild", 0.75), ("scale", "medium", 0.5), ("scale", "strong", 0.33),
                          ("upscale", "medium", 1.5)])
def test_scale_factors(photo, name, severity, factor):
    assert apply_perturbation(photo, name, severity).size == (round(120 * factor), round(90 * factor))


@pytest.mark.parametrize(("severity", "area"), [("mild", 0.9), ("medium", 0.75), ("strong", 0.5)])
def test_crop_keeps_centre_area(photo, severity, area):
    cropped = apply_perturbation(photo, "crop", severity)
    width, height = cropped.size
    assert width * height / (120 * 90) == pytest.approx(area, abs=0.02)
    left, top = (120 - width) // 2, (90 - height) // 2
    np.testing.assert_array_equal(as_array(cropped), as_array(photo)[top:top + height, left:left + width])


def test_jpeg_quality_ladder(photo):
    errors = []
    for severity, quality in (("mild", 90), ("medium", 70), ("strong", 50)):
        out = apply_perturbation(photo, "jpeg", severity)
        assert out.quantization == quantization_of(quality)
        errors.append(np.abs(as_array(out) - as_array(photo)).mean())
    assert errors[0] < errors[1] < errors[2]


def test_neutral_reencode_exact_recipe():
    array = np.zeros((512, 256, 3), np.uint8)  # portrait: 256 wide, so only rows 128..384 survive the crop
    array[:128] = (255, 0, 0)
    array[128:384] = (0, 200, 0)
    array[384:] = (0, 0, 255)
    out = neutral_reencode(Image.fromarray(array).convert("RGBA"))
    assert (out.mode, out.size) == ("RGB", (256, 256))
    assert out.quantization == quantization_of(90)
    pixels = as_array(out)
    assert np.abs(pixels[4:-4] - (0, 200, 0)).max() < 12


def test_neutral_reencode_upsizes_small_images_by_shorter_side():
    small = Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 100, 3), dtype=np.uint8))
    expected = small.resize((400, 256), Image.Resampling.BICUBIC).crop((72, 0, 328, 256))
    buffer = io.BytesIO()
    expected.save(buffer, format="JPEG", quality=90)
    out = neutral_reencode(small)
    assert out.size == (256, 256)
    np.testing.assert_array_equal(as_array(out), as_array(Image.open(buffer)))


def test_iter_perturbations_selection():
    everything = list(iter_perturbations())
    assert len(everything) == 6 * 3 + 1
    chosen = [(n, s) for n, s, _ in iter_perturbations("blur, jpeg:strong")]
    assert chosen == [("blur", "mild"), ("blur", "medium"), ("blur", "strong"), ("jpeg", "strong")]
    assert list(iter_perturbations("none")) == []
    medium = [(n, s) for n, s, _ in iter_perturbations("medium")]
    assert medium == [(name, "medium") for name in PERTURBATIONS]  # upscale's one severity is medium
    assert [(n, s) for n, s, _ in iter_perturbations("strong")] == [(name, "strong") for name in PERTURBATIONS
                                                                     if name != "upscale"]
    with pytest.raises(PerturbationError, match="Unknown perturbation 'sharpen'"):
        list(iter_perturbations("sharpen"))
    with pytest.raises(PerturbationError, match="severities"):
        list(iter_perturbations("upscale:strong"))


def test_unknown_names_raise(photo):
    with pytest.raises(PerturbationError, match="choose one of"):
        apply_perturbation(photo, "swirl", "mild")
    with pytest.raises(PerturbationError, match="severities"):
        apply_perturbation(photo, "blur", "extreme")


def test_perturbed_examples_keep_labels(photo):
    batch = {"image": [photo, photo], "label": [0, 1], "path": ["a", "b"]}
    out = perturbed_examples(PERTURBATIONS["scale"]["medium"])(batch)
    assert out["label"] == [0, 1] and out["path"] == ["a", "b"]
    assert [im.size for im in out["image"]] == [(60, 45)] * 2
