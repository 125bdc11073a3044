"""Training configuration: one dataclass with defaults; a JSON file may set them, the command line overrides."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from hub_utils.model_folder import without_retired
from training.augment import AugmentConfig
from training.perturb import PERTURBATIONS

TRAIN_VIEWS = ("raw", "neutral")
PERTURBED_VIEW_AT = "8d270b4"  # the last commit with the retired `perturbed` training view

RETIRED_OPTIONS = {  # the last commit that has them -> their old defaults, as older train_config.json files hold them
    "d2a40e0": {"npr": False, "fakes_from_reals": 0.0, "frozen_blocks": 0, "full_resolution_stem": False,
                "kept_blocks": 0, "linear_probe": False, "mixup_alpha": 0.0, "cutmix_alpha": 0.0, "sam_rho": 0.0},
    PERTURBED_VIEW_AT: {"train_perturbations": list(PERTURBATIONS), "perturbed_weight": 1.0}}


@dataclass
class TrainConfig:
    """Everything a training run depends on; written resolved beside the model as `train_config.json`."""

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
    # frozen ViT backbone: these blocks' tokens feed a linear head
    feature_blocks: list[int] = field(default_factory=list)
    feature_tokens: str = "cls+patch"  # with feature_blocks: each block's class token, and its mean patch token
    probe_c: float = 0.05  # with feature_blocks: inverse L2 strength of the logistic-regression head
    train_views: list[str] = field(default_factory=lambda: ["neutral"])  # with feature_blocks: views per image
    face_crop: bool = True  # score face crops (False: whole images)
    feature_cache: str = ".cache/features"  # with feature_blocks: cached block tokens (training.features)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        if not 0.0 <= self.neutral_p <= 1.0:
            raise ValueError(f"neutral_p is a probability and must lie in [0, 1], got {self.neutral_p!r}.")
        if "perturbed" in self.train_views:
            raise ValueError("the 'perturbed' training view was retired (see 'Retired options' in "
                             f"docs/experiments.md); check out commit {PERTURBED_VIEW_AT} to use it.")
        if set(self.train_views) - set(TRAIN_VIEWS) or not self.train_views:
            raise ValueError(f"train_views must name one or more of {', '.join(TRAIN_VIEWS)}; "
                             f"got {self.train_views!r}.")
        if self.probe_c <= 0:
            raise ValueError(f"probe_c is an inverse regularization strength and must be positive, "
                             f"got {self.probe_c!r}.")

    @property
    def preprocessing(self) -> str:
        return self.augment.mode

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        values = without_retired(data, RETIRED_OPTIONS, "training option")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training config keys: {', '.join(unknown)} (known: {', '.join(sorted(known))}).")
        if isinstance(values.get("augment"), dict):
            values["augment"] = AugmentConfig.from_dict(values["augment"])
        return cls(**values)

    @classmethod
    def from_file(cls, path: str | Path) -> TrainConfig:
        """A config saved as JSON: a `training/configs` recipe or a trained folder's training config."""
        return cls.from_dict(json.loads(Path(path).read_text()))
