"""Training configuration: one dataclass with defaults; a JSON file may set them, the command line overrides."""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from hub_utils.model_folder import without_retired
from training.augment import MODES, AugmentConfig

RETIRED_OPTIONS = {  # at their old defaults, as the train_config.json files written before they were retired hold them
    "npr": False, "fakes_from_reals": 0.0, "frozen_blocks": 0, "full_resolution_stem": False, "kept_blocks": 0,
    "linear_probe": False, "mixup_alpha": 0.0, "cutmix_alpha": 0.0, "sam_rho": 0.0}


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
        unknown_views = sorted(set(self.train_views) - {"raw", "neutral"})
        if unknown_views or not self.train_views:
            raise ValueError(f"train_views must name one or more of raw, neutral; got {self.train_views!r}.")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.train",
                                     description="Fine-tune a timm backbone as a deepfake face detector.")
    parser.add_argument("--config", help="JSON file with TrainConfig keys; command-line flags override it.")
    parser.add_argument("--backbone", help="any timm model name (default tf_efficientnet_lite0)")
    parser.add_argument("--data", nargs="+", help="folder trees, challenge zip folders or Hub dataset ids")
    parser.add_argument("--output", help="model folder to write")
    parser.add_argument("--pretrained", help="hub | packaged | none | PATH (.safetensors or model folder)")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--image-size", type=int, dest="image_size")
    parser.add_argument("--batch-size", type=int, dest="batch_size")
    parser.add_argument("--lr", type=float)
    parser.add_argument("--seed", type=int, help="seed of initialisation, sampling and augmentation")
    parser.add_argument("--split-seed", type=int, dest="split_seed",
                        help="seed of the train/validation/test split (default 0, the split the reports use)")
    parser.add_argument("--preprocessing", choices=MODES,
                        help="resize to the model size, or train on native-resolution crops and score the centre crop "
                             "or (tile) the mean logit of windows covering the face: with a small --image-size, "
                             "a patch classifier")
    parser.add_argument("--mixed-precision", dest="mixed_precision", choices=["no", "fp16", "bf16"])
    parser.add_argument("--num-workers", type=int, dest="num_workers")
    parser.add_argument("--max-steps-per-epoch", type=int, dest="max_steps_per_epoch")
    parser.add_argument("--neutral-p", type=float, dest="neutral_p")
    parser.add_argument("--exclude", nargs="+", help="leave out of training: generator=NAME or source=NAME")
    parser.add_argument("--holdout", nargs="+",
                        help="leave out of training but keep in validation, so the threshold is chosen with an "
                             "unseen generator")
    parser.add_argument("--patience", type=int)
    parser.add_argument("--keep-checkpoint", action="store_true", default=None, dest="keep_checkpoint")
    parser.add_argument("--test-time-flip", action="store_true", default=None, dest="test_time_flip",
                        help="score each face and its mirror image and average the logits (validation and the "
                             "model folder)")
    parser.add_argument("--feature-blocks", type=int, nargs="+", dest="feature_blocks",
                        help="freeze the backbone (a timm ViT such as vit_base_patch16_clip_quickgelu_224) and fit a "
                             "linear head on the tokens after these blocks (1-based), from cached features")
    parser.add_argument("--feature-tokens", choices=("cls", "cls+patch"), dest="feature_tokens",
                        help="with --feature-blocks: each block's class token, or beside it the mean patch token")
    parser.add_argument("--probe-c", type=float, dest="probe_c", help="with --feature-blocks: inverse L2 strength")
    parser.add_argument("--train-views", nargs="+", choices=("raw", "neutral"), dest="train_views",
                        help="with --feature-blocks: the views of each training image (as stored, neutrally "
                             "re-encoded)")
    parser.add_argument("--no-face-crop", action="store_false", default=None, dest="face_crop",
                        help="score whole images instead of face crops")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint in --output")
    return parser


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    """Defaults, then the --config file, then explicit flags."""
    values: dict[str, Any] = json.loads(Path(args.config).read_text()) if args.config else {}
    for name in ("backbone", "data", "output", "pretrained", "epochs", "image_size", "batch_size", "lr", "seed",
                 "split_seed", "mixed_precision", "num_workers", "max_steps_per_epoch", "neutral_p", "exclude",
                 "holdout", "patience", "keep_checkpoint", "test_time_flip", "feature_blocks", "feature_tokens",
                 "probe_c", "train_views", "face_crop"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    config = TrainConfig.from_dict(values)
    if args.preprocessing:
        config.augment.mode = args.preprocessing
    if not config.data or not config.output:
        raise ValueError("--data and --output are required (on the command line or in --config).")
    return config
