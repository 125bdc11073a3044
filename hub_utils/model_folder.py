"""The model folder, identical locally and on the Hub: `config.json` (timm layout plus a `deepfake` section),
`model.safetensors` (the only weights format loaded) and `README.md` (the model card). What differs between kinds of
model (`deepfake.kind`: which tensors the folder holds, how the model is built) is asked of `kinds.KINDS`."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from .backbone_weights import BackboneWeightsError
from .constants import CARD_NAME, CONFIG_NAME, LABEL_NAMES, PICKLE_NAMES, WEIGHTS_NAME
from .faces import FaceSettings
from .feature_model import FrozenBackbone
from .kinds import KINDS, ModelKind, checked_kind, inferred_kind, kind_of

PREPROCESSING_MODES = ("resize", "crop", "tile")
# retired options (docs/experiments.md, "Retired options"): the last commit that has them -> their old defaults
RETIRED_DEEPFAKE_OPTIONS = {"d2a40e0": {"npr": False, "full_resolution_stem": False, "kept_blocks": 0}}


class ModelFolderError(ValueError):
    """A model folder that cannot be used; the message names the folder and what to do."""


@dataclass
class DeepfakeConfig:
    """Our section of `config.json`: how the detector turns an image into a verdict."""

    kind: str = ""  # a `kinds.KINDS` name; empty: inferred (`kinds.inferred_kind`), as for folders from before it
    threshold: float = 0.5
    preprocessing: str = "resize"
    face_crop: FaceSettings = field(default_factory=FaceSettings)
    temperature: float = 1.0
    test_time_flip: bool = False  # average the logits of each input and its mirror image
    backbone: FrozenBackbone | None = None  # frozen_head kind: the frozen timm ViT whose block tokens feed the head
    trained: bool = True
    training_data: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Infer a missing kind; a ValueError where the kind is unknown or the sections do not fit it."""
        self.kind = self.kind or inferred_kind(vars(self))
        checked_kind(self.kind).check(self)

    @property
    def model_kind(self) -> ModelKind:
        """This folder's kind in the registry (`kinds.KINDS`)."""
        return KINDS[self.kind]

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
        try:
            config = cls(**values)
        except ValueError as error:
            raise ModelFolderError(f"{where}: {error}") from None
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
    """The model of a config, without weights, as its kind builds it (a timm model, a head on a frozen backbone)."""
    if deepfake is None:
        deepfake = DeepfakeConfig.from_dict(config.get("deepfake", {}))
    try:
        return deepfake.model_kind.create(config, deepfake)
    except (RuntimeError, ValueError) as error:
        raise ModelFolderError(f"cannot build architecture {config['architecture']!r}: {error}") from None


def load_model(folder: Path) -> tuple[torch.nn.Module, dict[str, Any], DeepfakeConfig]:
    """Model in eval mode with weights from `model.safetensors` (and those its kind names but the folder does not
    hold); pickle checkpoints are refused."""
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
        deepfake.model_kind.load(model, load_file(weights))
    except (RuntimeError, OSError) as error:
        raise ModelFolderError(f"{weights}: weights do not match {config['architecture']}: "
                               f"{str(error)[:300]}") from None
    load_external_weights(model, config, folder)
    return model.eval(), config, deepfake


def load_external_weights(model: torch.nn.Module, config: dict[str, Any], folder: Path | None = None,
                          source: str | None = None) -> None:
    """Put in place the weights that a model's kind names but its folder does not hold (a frozen backbone's, found
    and checked by `resolve_backbone_weights`); nothing for a kind whose folder holds them all."""
    try:
        KINDS[kind_of(model)].load_external(model, config, folder, source)
    except BackboneWeightsError as error:
        raise ModelFolderError(f"{folder or config['architecture']}: {error}") from None


def save_model_folder(model: torch.nn.Module, folder: Path, deepfake: DeepfakeConfig,
                      card_text: str | None = None) -> Path:
    """Write config.json + model.safetensors (+ README.md), the tensors its kind keeps: a fine-tuned timm model's
    folder loads with timm `local-dir:` and transformers; a frozen-head model's folder holds the head alone and names
    its backbone."""
    folder = Path(folder)
    kind = kind_of(model)
    if deepfake.kind != kind:
        raise ModelFolderError(f"{folder}: the model is of the {kind} kind but its deepfake config says "
                               f"{deepfake.kind}; pass a DeepfakeConfig of kind {kind!r}.")
    folder.mkdir(parents=True, exist_ok=True)
    config = KINDS[kind].save(model, folder, deepfake.to_dict())
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    if card_text is not None:
        (folder / CARD_NAME).write_text(card_text)
    return folder
