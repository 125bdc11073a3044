"""The model folder, identical locally and on the Hub: `config.json` (timm layout plus a `deepfake` section),
`model.safetensors` (the only weights format loaded) and `README.md` (the model card)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import timm
import torch
from safetensors.torch import load_file, save_file

from .backbone_weights import BackboneWeightsError, resolve_backbone_weights
from .constants import CARD_NAME, CONFIG_NAME, LABEL_NAMES, PICKLE_NAMES, WEIGHTS_NAME
from .faces import FaceSettings
from .feature_model import FrozenBackbone, FrozenFeatureClassifier, create_frozen_backbone

PREPROCESSING_MODES = ("resize", "crop", "tile")
# retired options (docs/experiments.md, "Retired options"): the last commit that has them -> their old defaults
RETIRED_DEEPFAKE_OPTIONS = {"d2a40e0": {"npr": False, "full_resolution_stem": False, "kept_blocks": 0}}


class ModelFolderError(ValueError):
    """A model folder that cannot be used; the message names the folder and what to do."""


@dataclass
class DeepfakeConfig:
    """Our section of `config.json`: how the detector turns an image into a verdict."""

    threshold: float = 0.5
    preprocessing: str = "resize"
    face_crop: FaceSettings = field(default_factory=FaceSettings)
    temperature: float = 1.0
    test_time_flip: bool = False  # average the logits of each input and its mirror image
    backbone: FrozenBackbone | None = None  # a frozen timm ViT whose block tokens feed the head (`feature_model`)
    trained: bool = True
    training_data: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config.json") -> DeepfakeConfig:
        try:
            values = without_retired(data, RETIRED_DEEPFAKE_OPTIONS, "'deepfake' option")
        except ValueError as error:
            raise ModelFolderError(f"{where}: {error}") from None
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ModelFolderError(f"{where}: unknown keys in 'deepfake': {', '.join(unknown)}.")
        if "face_crop" in values:
            try:
                values["face_crop"] = FaceSettings(**values["face_crop"])
            except TypeError as error:
                raise ModelFolderError(f"{where}: bad 'deepfake.face_crop': {error}.") from None
        if values.get("backbone") is not None:
            try:
                values["backbone"] = FrozenBackbone(**values["backbone"])
            except (TypeError, ValueError) as error:
                raise ModelFolderError(f"{where}: bad 'deepfake.backbone': {error}") from None
        config = cls(**values)
        if config.preprocessing not in PREPROCESSING_MODES:
            raise ModelFolderError(
                f"{where}: 'deepfake.preprocessing' is {config.preprocessing!r}; "
                f"use one of {', '.join(PREPROCESSING_MODES)}.")
        if not 0.0 < config.threshold < 1.0:
            raise ModelFolderError(f"{where}: 'deepfake.threshold' must lie strictly between 0 and 1.")
        return config


def without_retired(data: dict[str, Any], retired: dict[str, dict[str, Any]], kind: str) -> dict[str, Any]:
    """`data` without the retired options that files written before their retirement still carry at their old
    defaults (`retired`: the last commit that has them -> their defaults); a ValueError names one that is set and the
    commit to check out to use it."""
    for commit, old_defaults in retired.items():
        for name, default in old_defaults.items():
            if name in data and data[name] != default:
                raise ValueError(f"{kind} {name!r} is {json.dumps(data[name])}, but this option was retired (see "
                                 f"'Retired options' in docs/experiments.md); check out commit {commit} to use it.")
    names = {name for old_defaults in retired.values() for name in old_defaults}
    return {key: value for key, value in data.items() if key not in names}


def read_config(folder: Path) -> tuple[dict[str, Any], DeepfakeConfig]:
    """The validated `config.json` of a model folder and its `deepfake` section."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelFolderError(f"{folder}: no such model folder. Pass a folder with config.json and "
                               "model.safetensors, or a Hub id.")
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise ModelFolderError(f"{folder}: no config.json, so this is not a model folder.")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelFolderError(f"{path}: malformed JSON ({error}).") from None
    if not isinstance(config, dict) or "architecture" not in config:
        raise ModelFolderError(f"{path}: no 'architecture' key; expected a timm model config.")
    if config.get("label_names") != LABEL_NAMES or config.get("num_classes") != len(LABEL_NAMES):
        raise ModelFolderError(
            f"{path}: label_names must be exactly {LABEL_NAMES} with num_classes 2 (fake = 1), got "
            f"{config.get('label_names')} / {config.get('num_classes')}.")
    if not isinstance(config.get("pretrained_cfg"), dict):
        raise ModelFolderError(f"{path}: no 'pretrained_cfg' (input size, mean, std) to build preprocessing from.")
    return config, DeepfakeConfig.from_dict(config.get("deepfake", {}), str(path))


def create_model(config: dict[str, Any], deepfake: DeepfakeConfig | None = None) -> torch.nn.Module:
    """The architecture of a config, without weights: a timm model, or a frozen backbone with its head."""
    try:
        if deepfake is not None and deepfake.backbone is not None:
            backbone = create_frozen_backbone(config["architecture"], config["pretrained_cfg"])
            return FrozenFeatureClassifier(backbone, deepfake.backbone, config["num_classes"])
        return timm.create_model(
            config["architecture"], pretrained=False, num_classes=config["num_classes"],
            pretrained_cfg_overlay=config["pretrained_cfg"],
            **{k: v for k, v in config.get("model_args", {}).items() if k != "num_classes"})
    except (RuntimeError, ValueError) as error:
        raise ModelFolderError(f"cannot build architecture {config['architecture']!r}: {error}") from None


def load_model(folder: Path) -> tuple[torch.nn.Module, dict[str, Any], DeepfakeConfig]:
    """Model in eval mode with weights from `model.safetensors`; pickle checkpoints are refused."""
    folder = Path(folder)
    config, deepfake = read_config(folder)
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        pickles = [name for name in PICKLE_NAMES if (folder / name).is_file()]
        hint = (f" It has {pickles[0]}, a pickle file, which is refused because loading it can run code."
                if pickles else "")
        raise ModelFolderError(f"{folder}: no model.safetensors.{hint} Convert the weights with "
                               "safetensors.torch.save_file.")
    model = create_model(config, deepfake)
    try:
        state = load_file(weights)
        if isinstance(model, FrozenFeatureClassifier):
            model.head.load_state_dict({k.removeprefix("head."): v for k, v in state.items()}, strict=True)
            if set(state) != {f"head.{k}" for k in model.head.state_dict()}:
                raise RuntimeError(f"expected only the head's weights, found {sorted(state)[:4]}")
        else:
            model.load_state_dict(state, strict=True)
    except (RuntimeError, OSError) as error:
        raise ModelFolderError(f"{weights}: weights do not match {config['architecture']}: "
                               f"{str(error)[:300]}") from None
    if isinstance(model, FrozenFeatureClassifier):
        load_backbone(model, config["architecture"], folder)
    return model.eval(), config, deepfake


def load_backbone(model: FrozenFeatureClassifier, architecture: str, folder: Path | None = None,
                  source: str | None = None) -> None:
    """Put the frozen backbone's weights in place, found and checked by `resolve_backbone_weights`."""
    try:
        state = resolve_backbone_weights(architecture, model.spec.weights_sha256, folder, source)
    except BackboneWeightsError as error:
        raise ModelFolderError(f"{folder or architecture}: {error}") from None
    # the tower's own head (CLIP's projection) is unused
    tower = {k: v for k, v in state.items() if not k.startswith("head.")}
    try:
        model.backbone.load_state_dict(tower, strict=True)
    except RuntimeError as error:
        raise ModelFolderError(f"backbone weights do not fit {architecture}: {str(error)[:300]}") from None


def save_model_folder(model: torch.nn.Module, folder: Path, deepfake: DeepfakeConfig,
                      card_text: str | None = None) -> Path:
    """Write config.json + model.safetensors (+ README.md). A timm model's folder loads with timm `local-dir:` and
    transformers; a frozen-backbone model's folder holds the head alone and names its backbone."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / CONFIG_NAME
    if isinstance(model, FrozenFeatureClassifier):
        config = {"architecture": model.backbone.pretrained_cfg["architecture"], "num_classes": len(LABEL_NAMES),
                  "num_features": model.head.in_features, "label_names": LABEL_NAMES,
                  "pretrained_cfg": {k: v for k, v in model.pretrained_cfg.items() if k not in ("url", "hf_hub_id")},
                  "deepfake": deepfake.to_dict()}
        save_file(model.head_state(), str(folder / WEIGHTS_NAME))
    else:
        timm.models.save_for_hf(
            model, str(folder), safe_serialization=True,
            model_config={"label_names": LABEL_NAMES, "deepfake": deepfake.to_dict()})
        config = json.loads(config_path.read_text())
        config.get("model_args", {}).pop("num_classes", None)  # transformers passes num_classes itself
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    if card_text is not None:
        (folder / CARD_NAME).write_text(card_text)
    return folder
