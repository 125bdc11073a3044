"""Model input from a face region, rebuilt from the model folder's config (never retyped per script).

`resize` is timm's own eval transform from `pretrained_cfg` (what timm and transformers apply too); `crop` and
`tile` keep native resolution, so the generator's upsampling traces survive: `crop` scores the centre window,
`tile` averages the scores of windows that cover the region. Smaller regions are tiled up to size.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image
from timm.data import create_transform, resolve_data_config

Preprocess = Callable[[Image.Image], torch.Tensor]  # region -> (windows, 3, S, S)


def tile_to_size(array: np.ndarray, size: int) -> np.ndarray:
    """Repeat an HxWxC array (wrap padding) until both sides are at least `size`."""
    pad_h, pad_w = max(0, size - array.shape[0]), max(0, size - array.shape[1])
    if pad_h or pad_w:
        array = np.pad(array, ((0, pad_h), (0, pad_w), (0, 0)), mode="wrap")
    return array


def window_origins(length: int, size: int) -> list[int]:
    """Start offsets of the fewest `size` windows that cover `length`, spread evenly."""
    count = max(1, int(np.ceil(length / size)))
    return [round(i * (length - size) / (count - 1)) for i in range(count)] if count > 1 else [(length - size) // 2]


def _normalizer(data_config: dict[str, Any]) -> Callable[[np.ndarray], torch.Tensor]:
    mean = torch.tensor(data_config["mean"]).view(3, 1, 1)
    std = torch.tensor(data_config["std"]).view(3, 1, 1)
    return lambda array: (torch.from_numpy(np.array(array)).permute(2, 0, 1).float() / 255.0 - mean) / std


def build_preprocess(config: dict[str, Any], mode: str) -> Preprocess:
    """The preprocessing of a model folder's config for one of the modes `resize`, `crop`, `tile`."""
    data_config = resolve_data_config(pretrained_cfg=config["pretrained_cfg"])
    size = int(data_config["input_size"][-1])
    if mode == "resize":
        transform = create_transform(**data_config, is_training=False)
        return lambda region: transform(region).unsqueeze(0)
    normalize = _normalizer(data_config)

    def windows(region: Image.Image) -> torch.Tensor:
        array = tile_to_size(np.asarray(region), size)
        height, width = array.shape[:2]
        if mode == "crop":
            origins = [((height - size) // 2, (width - size) // 2)]
        else:
            origins = [(y, x) for y in window_origins(height, size) for x in window_origins(width, size)]
        return torch.stack([normalize(array[y:y + size, x:x + size]) for y, x in origins])

    return windows


def input_size(config: dict[str, Any]) -> int:
    """The square side the model expects."""
    return int(resolve_data_config(pretrained_cfg=config["pretrained_cfg"])["input_size"][-1])
