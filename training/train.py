"""Fine-tune a timm backbone as a deepfake face detector and write a complete model folder.

    python -m training.train --backbone tf_efficientnet_lite0 --pretrained packaged \
        --data ../shared/data/faces --output models/my-detector --epochs 6 --image-size 160

Runs on CPU, one GPU or many (`accelerate launch -m training.train ...`). A checkpoint is written atomically each
epoch; `--resume` continues after an interruption, from the checkpoint, with the log cut back to it. Validation
scores go through `Detector.predict`, the same path the app and the CLI use; the final model is calibrated on the
validation split before it is saved.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from hub_utils.kinds import FROZEN_HEAD
from hub_utils.model_folder import ModelFolderError
from training.augment import MODES
from training.backbone import PretrainedError
from training.config import FLAT_FROZEN_HEAD_OPTIONS, TRAIN_VIEWS, TrainConfig
from training.trainers import run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.train",
                                     description="Fine-tune a timm backbone as a deepfake face detector.")
    parser.add_argument("--config", help="JSON file with TrainConfig keys; command-line flags override it.")
    parser.add_argument("--backbone", help="any timm model name (default tf_efficientnet_lite0)")
    parser.add_argument("--data", nargs="+", help="folder trees, challenge zip folders or Hub dataset ids")
    parser.add_argument("--output", help="model folder to write")
    parser.add_argument("--pretrained", help="hub | packaged | none | PATH (.safetensors or model folder)")
    parser.add_argument("--epochs", type=int, help="training epochs (default 10)")
    parser.add_argument("--image-size", type=int, dest="image_size", help="model input side in pixels (default 192)")
    parser.add_argument("--batch-size", type=int, dest="batch_size", help="images per training batch (default 32)")
    parser.add_argument("--lr", type=float, help="peak learning rate of AdamW (default 3e-4)")
    parser.add_argument("--seed", type=int, help="seed of initialisation, sampling and augmentation")
    parser.add_argument("--split-seed", type=int, dest="split_seed",
                        help="seed of the train/validation/test split (default 0, the split the reports use)")
    parser.add_argument("--preprocessing", choices=MODES,
                        help="resize to the model size, or train on native-resolution crops and score the centre crop "
                             "or (tile) the mean logit of windows covering the face: with a small --image-size, "
                             "a patch classifier")
    parser.add_argument("--mixed-precision", dest="mixed_precision", choices=["no", "fp16", "bf16"],
                        help="Accelerate's mixed precision (default no)")
    parser.add_argument("--num-workers", type=int, dest="num_workers", help="data loader workers (default 2)")
    parser.add_argument("--max-steps-per-epoch", type=int, dest="max_steps_per_epoch",
                        help="cut each epoch after this many steps (default 0: a full pass)")
    parser.add_argument("--neutral-p", type=float, dest="neutral_p",
                        help="probability of the neutral re-encoding before face crop and augmentation (default 0.5)")
    parser.add_argument("--exclude", nargs="+", help="leave out of training: generator=NAME or source=NAME")
    parser.add_argument("--holdout", nargs="+",
                        help="leave out of training but keep in validation, so the threshold is chosen with an "
                             "unseen generator")
    parser.add_argument("--patience", type=int,
                        help="stop after this many epochs without a better validation balanced accuracy (default 3)")
    parser.add_argument("--keep-checkpoint", action="store_true", default=None, dest="keep_checkpoint",
                        help="keep the last checkpoint in --output after training")
    parser.add_argument("--test-time-flip", action="store_true", default=None, dest="test_time_flip",
                        help="score each face and its mirror image and average the logits (validation and the "
                             "model folder)")
    parser.add_argument("--feature-blocks", type=int, nargs="+", dest="feature_blocks",
                        help="freeze the backbone (a timm ViT such as vit_base_patch16_clip_quickgelu_224) and fit a "
                             "linear head on the tokens after these blocks (1-based), from cached features: the "
                             "frozen_head kind")
    parser.add_argument("--feature-tokens", choices=("cls", "cls+patch"), dest="feature_tokens",
                        help="with --feature-blocks: each block's class token, or beside it the mean patch token")
    parser.add_argument("--probe-c", type=float, dest="probe_c", help="with --feature-blocks: inverse L2 strength")
    parser.add_argument("--train-views", nargs="+", choices=TRAIN_VIEWS, dest="train_views",
                        help="with --feature-blocks: the views of each training image (as stored, neutrally "
                             "re-encoded; default: neutral)")
    parser.add_argument("--no-face-crop", action="store_false", default=None, dest="face_crop",
                        help="score whole images instead of face crops")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint in --output")
    return parser


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    """Defaults, then the --config file, then explicit flags (the frozen head's into its section)."""
    values: dict[str, Any] = json.loads(Path(args.config).read_text()) if args.config else {}
    for name in ("backbone", "data", "output", "pretrained", "epochs", "image_size", "batch_size", "lr", "seed",
                 "split_seed", "mixed_precision", "num_workers", "max_steps_per_epoch", "neutral_p", "exclude",
                 "holdout", "patience", "keep_checkpoint", "test_time_flip", "face_crop"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    if args.feature_blocks:
        values["kind"] = FROZEN_HEAD.name
    section = {option: getattr(args, name) for name, option in FLAT_FROZEN_HEAD_OPTIONS.items()
               if getattr(args, name, None) is not None}  # the flags take the flat names of older files
    if section:
        values[FROZEN_HEAD.name] = {**(values.get(FROZEN_HEAD.name) or {}), **section}
    config = TrainConfig.from_dict(values)
    if args.preprocessing:
        config.augment.mode = args.preprocessing
    if not config.data or not config.output:
        raise ValueError("--data and --output are required (on the command line or in --config)")
    return config


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:  # usage errors: an unreadable --config, unknown keys, values out of range, no --data or --output
        config = resolve_config(args)
    except (OSError, ValueError) as error:
        parser.error(str(error))
    try:
        run(config, resume=args.resume)
    except (PretrainedError, ValueError, FileExistsError, ModelFolderError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
