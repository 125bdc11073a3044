"""Tests for training.augment: config checks, each augmentation's effect, modes, determinism, the preview command
(training.prepare)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from training import augment, prepare
from training.augment import AugmentConfig, AugmentConfigError, build_train_transform, region_box

SIZE = 64
OFF = {name: 0.0 for name in ("blackout_p", "rotate_p", "hflip_p", "vflip_p", "jpeg_p", "blur_p", "noise_p",
                              "color_p", "affine_p")}
LANDMARKS = np.array([[20, 24], [44, 24], [32, 36], [24, 46], [40, 46]], np.float32)


@pytest.fixture
def image() -> np.ndarray:
    """Textured 64x64 RGB: a smooth colour field plus fine noise (so blur and JPEG have something to remove)."""
    rng = np.random.default_rng(0)
    smooth = np.asarray(Image.fromarray(rng.integers(0, 256, (4, 4, 3), np.uint8)).resize((SIZE, SIZE)), np.int16)
    return np.clip(smooth + rng.integers(-30, 31, smooth.shape), 1, 255).astype(np.uint8)


def run(image: np.ndarray, landmarks=None, seed: int = 0, size: int = SIZE, **settings) -> np.ndarray:
    """Apply a transform with only `settings` switched on; return HxWx3 floats in 0..255 (un-normalised)."""
    cfg = AugmentConfig(**{**OFF, **settings})
    transform = build_train_transform(cfg, size, (0.0, 0.0, 0.0), (1 / 255, 1 / 255, 1 / 255), seed=seed)
    tensor = transform(image, landmarks)
    assert tensor.dtype == torch.float32 and tensor.shape == (3, size, size)
    return tensor.permute(1, 2, 0).numpy()


def test_all_off_is_identity(image):
    np.testing.assert_allclose(run(image), image, atol=1e-3)
    np.testing.assert_allclose(run(image, mode="crop"), image, atol=1e-3)


def test_normalisation_uses_mean_and_std(image):
    transform = build_train_transform(AugmentConfig(**OFF), SIZE, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    tensor = transform(image)
    np.testing.assert_allclose(tensor[0].numpy(), image[..., 0] / 127.5 - 1, atol=1e-5)


@pytest.mark.parametrize(("setting", "expected"), [("hflip_p", np.fliplr), ("vflip_p", np.flipud)])
def test_flips(image, setting, expected):
    np.testing.assert_allclose(run(image, **{setting: 1.0}), expected(image), atol=1e-3)


def test_blackout_blacks_out_exactly_one_landmark_region(image):
    boxes = {region: region_box(LANDMARKS, region) for region in augment.REGIONS}
    seen = set()
    for seed in range(12):
        out = run(image, LANDMARKS, seed=seed, blackout_p=1.0)
        black = np.all(out == 0, axis=2)
        matches = [r for r, (x0, y0, x1, y1) in boxes.items()
                   if black[y0:y1, x0:x1].all() and black.sum() == (y1 - y0) * (x1 - x0)]
        assert len(matches) == 1, seed
        seen.add(matches[0])
        np.testing.assert_allclose(out[~black], image[~black], atol=1e-3)
    assert seen == set(augment.REGIONS)


def test_blackout_without_landmarks_uses_canonical_positions(image):
    canonical = augment.CANONICAL_LANDMARKS * SIZE
    out = run(image, None, blackout_p=1.0)
    black = np.all(out == 0, axis=2)
    assert black.any()
    assert any(black[y0:y1, x0:x1].all() for x0, y0, x1, y1 in (region_box(canonical, r) for r in augment.REGIONS))


def test_blackout_happens_before_geometry(image):
    flipped_black = np.all(run(image, LANDMARKS, seed=5, blackout_p=1.0, hflip_p=1.0) == 0, axis=2)
    plain_black = np.all(run(image, LANDMARKS, seed=5, blackout_p=1.0) == 0, axis=2)
    np.testing.assert_array_equal(flipped_black, np.fliplr(plain_black))


def high_frequency(array: np.ndarray) -> float:
    grey = array.astype(np.float32).mean(axis=2)
    return float(np.abs(np.diff(grey, axis=0)).mean() + np.abs(np.diff(grey, axis=1)).mean())


def test_blur_removes_detail(image):
    out = run(image, blur_p=1.0, blur_sigma=(2.0, 2.0))
    assert high_frequency(out) < 0.5 * high_frequency(image)


def test_downscale_is_off_by_default_and_leaves_an_enlarged_copy(image):
    assert AugmentConfig().downscale_p == 0.0
    out = run(image, downscale_p=1.0, downscale_range=(0.5, 0.5))
    halved = np.asarray(Image.fromarray(image).resize((SIZE // 2, SIZE // 2), Image.Resampling.BOX), np.float32)
    assert high_frequency(out) < 0.7 * high_frequency(image)
    # Shrinking the output again gives back the shrunk image: enlarging added no new detail.
    reshrunk = np.asarray(Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
                          .resize((SIZE // 2, SIZE // 2), Image.Resampling.BOX), np.float32)
    assert np.abs(reshrunk - halved).mean() < 6.0


def test_patch_mask_is_off_by_default_and_blacks_out_squares_up_to_the_fraction(image):
    assert AugmentConfig().mask_p == 0.0 and not np.all(image == 0, axis=2).any()
    shares = []
    for seed in range(8):
        out = run(image, seed=seed, mask_p=1.0, mask_max_fraction=0.5, mask_patch=8)
        black = np.all(out == 0, axis=2)
        shares.append(black.mean())
        np.testing.assert_allclose(out[~black], image[~black], atol=1e-3)
        top = np.nonzero(black.any(axis=1))[0][0]  # the topmost black row starts a square at its leftmost pixel
        left = np.nonzero(black[top])[0][0]
        assert black[top:top + 8, left:left + 8].all(), seed
    assert 0.0 < min(shares) and max(shares) <= 0.5 and len(set(shares)) > 1


def test_jpeg_changes_pixels_but_keeps_content(image):
    out = run(image, jpeg_p=1.0, jpeg_quality=(30, 30))
    difference = np.abs(out - image).mean()
    assert 1.0 < difference < 20.0
    assert high_frequency(out) < high_frequency(image)


def test_noise_adds_zero_mean_noise(image):
    out = run(image, noise_p=1.0, noise_std=(0.05, 0.05))
    residual = out - image
    assert residual.std() > 5.0 and abs(residual.mean()) < 2.0


@pytest.mark.parametrize("setting", ["rotate_p", "affine_p", "color_p"])
def test_geometry_and_colour_change_the_image(image, setting):
    out = run(image, **{setting: 1.0})
    assert np.abs(out - image).mean() > 1.0


def test_rotation_stays_within_limit(image):
    tiny = run(image, rotate_p=1.0, rotate_limit=1.0)
    wide = run(image, rotate_p=1.0, rotate_limit=(30.0, 30.0))
    assert np.abs(tiny - image).mean() < np.abs(wide - image).mean()


def test_resize_mode_resizes_large_images(image):
    big = np.asarray(Image.fromarray(image).resize((128, 96)))
    assert run(big, size=SIZE).shape == (SIZE, SIZE, 3)


def test_crop_mode_keeps_native_pixels_and_tiles_small_images(image):
    out = run(image, mode="crop", size=40)  # random 40x40 window of the 64x64 image, no resampling
    windows = [image[y:y + 40, x:x + 40] for y in range(25) for x in range(25)]
    assert any(np.allclose(out, w, atol=1e-3) for w in windows)
    small = image[:24, :30]
    tiled = run(small, mode="crop", size=SIZE)
    np.testing.assert_allclose(tiled, np.pad(small, ((0, 40), (0, 34), (0, 0)), mode="wrap"), atol=1e-3)


def test_same_seed_same_augmentation(image):
    settings = dict(rotate_p=0.5, hflip_p=0.5, color_p=0.5, jpeg_p=0.5)
    first = [run(image, seed=s, **settings) for s in (1, 2)]
    np.testing.assert_array_equal(first[0], run(image, seed=1, **settings))
    assert not np.array_equal(first[0], first[1])


def test_transform_reseeds_per_worker(image, monkeypatch):
    transform = build_train_transform(AugmentConfig(**{**OFF, "color_p": 1.0}), SIZE, (0,) * 3, (1,) * 3, seed=0)
    outputs = []
    for worker_seed in (11, 12, 11):
        monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda s=worker_seed: SimpleNamespace(seed=s))
        transform._worker_seed = None
        outputs.append(transform(image))
    assert not torch.equal(outputs[0], outputs[1]) and torch.equal(outputs[0], outputs[2])


def test_rejects_non_rgb_input():
    transform = build_train_transform(AugmentConfig(), SIZE, (0,) * 3, (1,) * 3)
    with pytest.raises(ValueError, match="RGB uint8"):
        transform(np.zeros((8, 8), np.uint8))


def test_config_from_dict_checks_keys_and_ranges():
    cfg = AugmentConfig.from_dict({"mode": "crop", "jpeg_quality": [50, 90], "blur_p": 0.3})
    assert (cfg.mode, cfg.jpeg_quality, cfg.blur_p) == ("crop", (50, 90), 0.3)
    assert AugmentConfig().jpeg_p == 0.1 and AugmentConfig().blur_p == 0.1
    with pytest.raises(AugmentConfigError, match="Unknown augmentation settings \\['jpeg_prob'\\]"):
        AugmentConfig.from_dict({"jpeg_prob": 0.5})
    with pytest.raises(AugmentConfigError, match="probability"):
        AugmentConfig(blur_p=1.5)
    with pytest.raises(AugmentConfigError, match="mode"):
        AugmentConfig(mode="stretch")
    with pytest.raises(AugmentConfigError, match="mask_max_fraction"):
        AugmentConfig(mask_max_fraction=0.0)


def test_transform_examples_keeps_labels(image):
    transform = build_train_transform(AugmentConfig(hflip_p=1.0), SIZE, (0,) * 3, (1,) * 3)
    batch = {"image": [Image.fromarray(image), Image.fromarray(image).convert("L")], "label": [1, 0]}
    out = augment.transform_examples(transform)(batch)
    assert out["label"] == [1, 0]
    assert [tuple(p.shape) for p in out["pixel_values"]] == [(3, SIZE, SIZE)] * 2


def test_preview_cli_writes_grid(tmp_path: Path, image):
    for label in ("real", "fake"):
        for i in range(3):
            path = tmp_path / "src" / label / "gen" / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.roll(image, 7 * i, axis=1)).save(path)
    output = tmp_path / "grid.png"
    prepare.main(["preview", "--data", str(tmp_path / "src"), "--output", str(output), "--n", "5",
                  "--image-size", "32", "--mode", "crop"])
    assert Image.open(output).size == (4 * 32, 2 * 32)
