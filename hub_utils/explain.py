"""Pictures that explain a score: a Grad-CAM heat map of where the model looked, and the Fourier spectrum of a region.

Grad-CAM shows which parts of the input drove the model's decision for a region; it does not show what is fake.
It runs on a private copy of the detector's model, so its hooks never see the forward passes of concurrent
`Detector.predict` calls on the shared model. Regions, preprocessing and windows are the detector's own
(`Detector.regions`, `Detector.preprocess`, `preprocess.window_origins`), never retyped here.
"""
from __future__ import annotations

import copy
import threading
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from timm.data import resolve_data_config

from .constants import LABEL_NAMES
from .detector import Detector, verdict_for
from .faces import Face
from .kinds import KINDS, kind_of
from .preprocess import input_size, tile_to_size, window_origins

SPECTRUM_MAX_SIDE = 1024  # larger regions: the spectrum of the central window (native pixels, not resized)


class DecisionMargin:
    """Grad-CAM target: the logit of the decided class minus the other's. P(fake) depends on nothing else, and a
    frozen-backbone head keeps the real logit at 0, so the decided class's logit alone would explain nothing."""

    def __init__(self, index: int) -> None:
        self.index = index

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return output[..., self.index] - output[..., 1 - self.index]


@dataclass
class RegionExplanation:
    """One scored region (a face, or the whole image when `face` is None) and its pictures."""

    face: Face | None
    fake_probability: float
    verdict: str
    looked: Image.Image  # Grad-CAM heat map over the pixels the model saw
    spectrum: Image.Image  # log-magnitude Fourier spectrum of the region


def target_layer(model: torch.nn.Module) -> torch.nn.Module:
    """The layer Grad-CAM reads, as the model's kind says (`ModelKind.gradcam_layer`): for a fine-tuned timm model
    the last convolutional feature map before pooling; for a frozen-head model the first norm of the last block its
    head reads."""
    return KINDS[kind_of(model)].gradcam_layer(model)


def fourier_spectrum(region: Image.Image, colormap: str = "magma") -> Image.Image:
    """Centred log-magnitude spectrum of the grey levels; generators' upsampling often shows as a grid of peaks."""
    grey = np.asarray(region.convert("L"), dtype=np.float64)
    height, width = grey.shape
    top, left = max(0, (height - SPECTRUM_MAX_SIDE) // 2), max(0, (width - SPECTRUM_MAX_SIDE) // 2)
    grey = grey[top:top + SPECTRUM_MAX_SIDE, left:left + SPECTRUM_MAX_SIDE]
    magnitude = np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(grey - grey.mean()))))
    low, high = np.percentile(magnitude, [1, 99.9])
    scaled = np.clip((magnitude - low) / max(high - low, 1e-9), 0.0, 1.0)
    return Image.fromarray((colormaps[colormap](scaled)[..., :3] * 255).astype(np.uint8))


class GradCamExplainer:
    """Grad-CAM for one detector, on a private copy of its model (hooks and gradients stay off the shared one)."""

    def __init__(self, detector: Detector) -> None:
        self.detector = detector
        self._model = copy.deepcopy(detector.model).eval().requires_grad_(True)  # a frozen backbone too: gradients flow
        kind = KINDS[kind_of(self._model)]
        self._layer = kind.gradcam_layer(self._model)
        self._reshape = kind.gradcam_reshape()  # a ViT's tokens -> a map
        self._lock = threading.Lock()
        data_config = resolve_data_config(pretrained_cfg=detector.config["pretrained_cfg"])
        self._mean = np.asarray(data_config["mean"], dtype=np.float32)
        self._std = np.asarray(data_config["std"], dtype=np.float32)

    def explain(self, image: Image.Image, max_regions: int | None = None) -> list[RegionExplanation]:
        """Heat map and spectrum for each region the detector scores in an RGB image (the largest faces first)."""
        regions = self.detector.regions(image)[:max_regions]
        probabilities = self.detector.score_regions([region for region, _ in regions])
        explanations = []
        for (region, face), probability in zip(regions, probabilities, strict=True):
            verdict = verdict_for(float(probability), self.detector.threshold)
            explanations.append(RegionExplanation(face, float(probability), verdict, self.looked(region, verdict),
                                                  fourier_spectrum(region)))
        return explanations

    def looked(self, region: Image.Image, verdict: str) -> Image.Image:
        """The Grad-CAM heat map over the model's view of a region."""
        view, heat = self.heat_map(region, verdict)
        return Image.fromarray(show_cam_on_image(view, heat, use_rgb=True, image_weight=0.6))

    def heat_map(self, region: Image.Image, verdict: str) -> tuple[np.ndarray, np.ndarray]:
        """The model's view of a region (HxWx3 in [0, 1]) and the Grad-CAM of the decision (`DecisionMargin`) over it
        (HxW in [0, 1]); in `tile` mode the windows' maps are stitched back."""
        windows = self.detector.preprocess(region)
        targets = [DecisionMargin(LABEL_NAMES.index(verdict))] * len(windows)
        with self._lock, GradCAM(model=self._model, target_layers=[self._layer],
                                 reshape_transform=self._reshape) as cam:
            maps = cam(input_tensor=windows, targets=targets)
        if self.detector.deepfake.preprocessing == "tile":
            view, heat = self._stitch(region, maps)
        else:  # `resize` and `crop` score one window: show it as the model saw it
            view = windows[0].permute(1, 2, 0).numpy() * self._std + self._mean
            heat = maps[0]
        return np.clip(view, 0.0, 1.0).astype(np.float32), heat

    def _stitch(self, region: Image.Image, maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Place the window maps where `preprocess` cut the windows; overlaps are averaged, padding cut off."""
        size = input_size(self.detector.config)
        padded = tile_to_size(np.asarray(region), size)
        height, width = padded.shape[:2]
        heat, weight = np.zeros((height, width)), np.zeros((height, width))
        origins = [(y, x) for y in window_origins(height, size) for x in window_origins(width, size)]
        for (y, x), window_map in zip(origins, maps, strict=True):
            heat[y:y + size, x:x + size] += window_map
            weight[y:y + size, x:x + size] += 1.0
        heat = (heat / np.maximum(weight, 1.0))[:region.height, :region.width]
        return padded[:region.height, :region.width] / 255.0, heat
