"""Tests for hub_utils.explain: the Fourier spectrum, the Grad-CAM layer choice, Grad-CAM on the detector's own
regions and windows, and that explaining never disturbs the shared model."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from hub_utils.detector import Detector, load_detector
from hub_utils.explain import SPECTRUM_MAX_SIDE, GradCamExplainer, fourier_spectrum, target_layer
from hub_utils.model_folder import DeepfakeConfig, save_model_folder
from training.backbone import create_backbone

EXAMPLES = Path(__file__).resolve().parents[1] / "space" / "examples"
ASTRONAUT = Image.open(EXAMPLES / "astronaut.jpg").convert("RGB")


def make_detector(folder: Path, preprocessing: str) -> Detector:
    """A tiny timm model (64 px) with a random head (the same for every folder), saved and loaded as a model folder."""
    model = create_backbone("test_efficientnet", "none", 64)
    with torch.no_grad():
        model.get_classifier().weight.normal_(generator=torch.Generator().manual_seed(0))
    return load_detector(save_model_folder(model, folder, DeepfakeConfig(preprocessing=preprocessing)))


@pytest.fixture(scope="module")
def resize_detector(tmp_path_factory) -> Detector:
    return make_detector(tmp_path_factory.mktemp("explain") / "resize", "resize")


@pytest.fixture(scope="module")
def tile_detector(tmp_path_factory) -> Detector:
    return make_detector(tmp_path_factory.mktemp("explain") / "tile", "tile")


def test_spectrum_peaks_at_the_pattern_frequency():
    x = np.arange(128)
    stripes = np.tile(127.5 + 100 * np.sin(2 * np.pi * x / 4), (128, 1)).astype(np.uint8)  # period 4 px, vertical
    spectrum = fourier_spectrum(Image.fromarray(stripes).convert("RGB"))
    assert spectrum.size == (128, 128) and spectrum.mode == "RGB"
    lightness = np.asarray(spectrum.convert("L"), dtype=float)
    peaks = {tuple(int(v) for v in np.unravel_index(i, lightness.shape)) for i in np.argsort(lightness, None)[-2:]}
    assert peaks == {(64, 32), (64, 96)}  # +-128/4 around the centre, on the centre row


def test_spectrum_of_a_large_region_keeps_native_pixels():
    spectrum = fourier_spectrum(Image.new("RGB", (SPECTRUM_MAX_SIDE + 200, 300), (90, 20, 200)))
    assert spectrum.size == (SPECTRUM_MAX_SIDE, 300)


def test_target_layer_is_the_last_feature_map():
    efficientnet = create_backbone("test_efficientnet", "none", 64)
    assert target_layer(efficientnet) is efficientnet.conv_head
    resnet = timm.create_model("resnet18", pretrained=False, num_classes=2)
    assert target_layer(resnet) is resnet.layer4


def test_explanations_follow_the_detectors_regions_and_scores(resize_detector):
    explanations = GradCamExplainer(resize_detector).explain(ASTRONAUT)
    score = resize_detector.predict([ASTRONAUT])[0]
    assert len(explanations) == len(score.faces) == 1 and explanations[0].face is not None
    assert explanations[0].fake_probability == pytest.approx(score.faces[0].fake_probability, abs=1e-6)
    assert explanations[0].verdict == score.faces[0].verdict
    region, _ = resize_detector.regions(ASTRONAUT)[0]
    assert explanations[0].looked.size == (64, 64)  # `resize`: the one window the model saw
    assert explanations[0].spectrum.size == region.size
    whole = GradCamExplainer(resize_detector).explain(Image.open(EXAMPLES / "synthetic_no_face.jpg").convert("RGB"))
    assert len(whole) == 1 and whole[0].face is None


def test_tile_heat_map_covers_the_face_crop(tile_detector):
    (region, _), = tile_detector.regions(ASTRONAUT)
    looked = GradCamExplainer(tile_detector).explain(ASTRONAUT)[0].looked
    assert looked.size == region.size  # `tile`: windows stitched back over the whole face crop
    assert np.abs(np.asarray(looked, dtype=float) - np.asarray(region, dtype=float)).mean() > 5.0


def test_tile_windows_are_placed_where_preprocess_cut_them(tile_detector):
    region = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 128, 3), dtype=np.uint8))
    assert len(tile_detector.preprocess(region)) == 2  # windows at x = 0 and x = 64
    view, heat = GradCamExplainer(tile_detector)._stitch(region, np.stack([np.zeros((64, 64)), np.ones((64, 64))]))
    assert np.all(heat[:, :64] == 0.0) and np.all(heat[:, 64:] == 1.0)
    assert np.allclose(view * 255.0, np.asarray(region))


def test_explaining_leaves_the_shared_model_untouched(resize_detector):
    before = resize_detector.predict([ASTRONAUT])[0].fake_probability
    explainer = GradCamExplainer(resize_detector)
    explainer.explain(ASTRONAUT)
    shared = resize_detector.model
    assert all(not m._forward_hooks and not m._backward_hooks for m in shared.modules())
    assert all(p.grad is None for p in shared.parameters())
    assert not any(p is q for p, q in zip(shared.parameters(), explainer._model.parameters(), strict=True))
    assert resize_detector.predict([ASTRONAUT])[0].fake_probability == before
