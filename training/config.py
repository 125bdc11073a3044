"""Training configuration: one dataclass with defaults; a JSON file may set them, the command line overrides.

`kind` names the kind of model a run trains (`hub_utils.kinds.KINDS`); options that only one kind reads live in that
kind's section (`frozen_head`), present exactly when the run is of that kind. The fine-tuned kind's options (epochs,
learning rate, augmentation, ...) are still top-level: every recipe and shipped `train_config.json` holds them there."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from hub_utils.kinds import FINE_TUNED, FROZEN_HEAD, KINDS
from hub_utils.model_folder import without_retired
from training.augment import AugmentConfig
from training.perturb import PERTURBATIONS

TRAIN_VIEWS = ("raw", "neutral")
PERTURBED_VIEW_AT = "8d270b4"  # the last commit with the retired `perturbed` training view
# files written before kinds had sections hold the frozen head's options top-level: flat name -> name in the section
FLAT_FROZEN_HEAD_OPTIONS = {"feature_blocks": "blocks", "feature_tokens": "tokens", "probe_c": "probe_c",
                            "train_views": "train_views", "feature_cache": "feature_cache"}

RETIRED_OPTIONS = {  # the last commit that has them -> their old defaults, as older train_config.json files hold them
    "d2a40e0": {"npr": False, "fakes_from_reals": 0.0, "frozen_blocks": 0, "full_resolution_stem": False,
                "kept_blocks": 0, "linear_probe": False, "mixup_alpha": 0.0, "cutmix_alpha": 0.0, "sam_rho": 0.0},
    PERTURBED_VIEW_AT: {"train_perturbations": list(PERTURBATIONS), "perturbed_weight": 1.0}}


@dataclass
class FrozenHeadOptions:
    """The `frozen_head` section: a linear head on the tokens of a frozen ViT backbone (`training.frozen_head`)."""

    blocks: list[int] = field(default_factory=lambda: [6, 8, 10, 12])  # 1-based blocks whose tokens feed the head
    tokens: str = "cls+patch"  # each block's class token, and its mean patch token
    probe_c: float = 0.05  # inverse L2 strength of the logistic-regression head
    train_views: list[str] = field(default_factory=lambda: ["neutral"])  # the views of each training image
    feature_cache: str = ".cache/features"  # cached block tokens (training.features)

    def __post_init__(self) -> None:
        if "perturbed" in self.train_views:
            raise ValueError("the 'perturbed' training view was retired (see 'Retired options' in "
                             f"docs/experiments.md); check out commit {PERTURBED_VIEW_AT} to use it.")
        if set(self.train_views) - set(TRAIN_VIEWS) or not self.train_views:
            raise ValueError(f"train_views must name one or more of {', '.join(TRAIN_VIEWS)}; "
                             f"got {self.train_views!r}.")
        if self.probe_c <= 0:
            raise ValueError(f"probe_c is an inverse regularization strength and must be positive, "
                             f"got {self.probe_c!r}.")
        if not self.blocks:
            raise ValueError("frozen_head.blocks must name at least one block of the backbone.")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FrozenHeadOptions:
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown keys in the frozen_head section: {', '.join(unknown)} (known: "
                             f"{', '.join(f.name for f in fields(cls))}).")
        return cls(**data)


KIND_SECTIONS: dict[str, type] = {FROZEN_HEAD.name: FrozenHeadOptions}  # kind -> its section (the same name)


@dataclass
class TrainConfig:
    """Everything a training run depends on; written resolved beside the model as `train_config.json`."""

    kind: str = FINE_TUNED.name  # the kind of model this run trains (`hub_utils.kinds.KINDS`)
    backbone: str = "tf_efficientnet_lite0"
    data: list[str] = field(default_factory=list)
    output: str = ""
    pretrained: str = "hub"  # hub | packaged | none | path to .safetensors or a model folder
    epochs: int = 10
    image_size: int = 192
    batch_size: int = 32
    lr: float = 3e-4
    weight_decay: float = 0.05
    warmup_epochs: float = 0.5
    patience: int = 3
    seed: int = 0  # initialisation of the head, sampling and augmentation
    split_seed: int = 0  # the train/validation/test draw, kept apart so seeds can be compared on one test split
    mixed_precision: str = "no"  # no | fp16 | bf16 (Accelerate)
    channels_last: bool = True
    num_workers: int = 2
    max_steps_per_epoch: int = 0  # 0: a full pass over the balanced sampler
    face_margin: float = 0.25
    face_cache: str = ".cache/faces"
    neutral_p: float = 0.5  # probability of the neutral re-encoding before face crop and augmentation
    exclude: list[str] = field(default_factory=list)  # "generator=NAME" / "source=NAME": left out of training
    holdout: list[str] = field(default_factory=list)  # same rules: out of training, kept in validation (threshold)
    keep_checkpoint: bool = False
    test_time_flip: bool = False  # validation and the model folder average each face with its mirror image
    face_crop: bool = True  # score face crops (False: whole images)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    frozen_head: FrozenHeadOptions | None = None  # kind frozen_head: its options (defaults where left out)

    def __post_init__(self) -> None:
        if not 0.0 <= self.neutral_p <= 1.0:
            raise ValueError(f"neutral_p is a probability and must lie in [0, 1], got {self.neutral_p!r}.")
        if self.kind not in KINDS:
            raise ValueError(f"kind is {self.kind!r}; use one of {', '.join(KINDS)}.")
        for name, section in KIND_SECTIONS.items():
            if name == self.kind and getattr(self, name) is None:
                setattr(self, name, section())
            elif name != self.kind and getattr(self, name) is not None:
                raise ValueError(f"the {name!r} section holds options of the {name} kind, but this run's kind is "
                                 f"{self.kind!r}: set kind to {name!r} (--feature-blocks on the command line) or "
                                 "drop the section.")

    @property
    def preprocessing(self) -> str:
        return self.augment.mode

    def to_dict(self) -> dict[str, Any]:
        """The resolved config; the sections of kinds other than this run's are left out."""
        return {key: value for key, value in asdict(self).items() if not (key in KIND_SECTIONS and value is None)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        values = with_sections(without_retired(data, RETIRED_OPTIONS, "training option"))
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training config keys: {', '.join(unknown)} (known: {', '.join(sorted(known))}).")
        if isinstance(values.get("augment"), dict):
            values["augment"] = AugmentConfig.from_dict(values["augment"])
        for name, section in KIND_SECTIONS.items():
            if isinstance(values.get(name), dict):
                values[name] = section.from_dict(values[name])
        return cls(**values)

    @classmethod
    def from_file(cls, path: str | Path) -> TrainConfig:
        """A config saved as JSON: a `training/configs` recipe or a trained folder's training config."""
        return cls.from_dict(json.loads(Path(path).read_text()))


def with_sections(data: dict[str, Any]) -> dict[str, Any]:
    """`data` with the frozen head's options in its section, where a file written before kinds had sections holds
    them top-level: non-empty `feature_blocks` made a frozen-head run (values already in the section win); without
    them the options were unused, and are dropped at their defaults (one that is set raises, saying where it goes)."""
    values = {key: value for key, value in data.items() if key not in FLAT_FROZEN_HEAD_OPTIONS}
    flat = {name: data[key] for key, name in FLAT_FROZEN_HEAD_OPTIONS.items() if key in data}
    if flat.get("blocks"):
        if values.setdefault("kind", FROZEN_HEAD.name) != FROZEN_HEAD.name:
            raise ValueError(f"feature_blocks is an option of the {FROZEN_HEAD.name} kind, but kind is "
                             f"{values['kind']!r}.")
        values[FROZEN_HEAD.name] = {**flat, **(values.get(FROZEN_HEAD.name) or {})}
        return values
    defaults = asdict(FrozenHeadOptions())
    for key, name in FLAT_FROZEN_HEAD_OPTIONS.items():
        if name != "blocks" and key in data and data[key] != defaults[name]:
            raise ValueError(f"{key} is an option of the {FROZEN_HEAD.name} kind: set \"kind\": "
                             f"\"{FROZEN_HEAD.name}\" and write it as \"{FROZEN_HEAD.name}\": {{\"{name}\": ...}}.")
    return values
