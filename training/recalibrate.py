"""Recalibrate a trained model folder on its own validation split, optionally with test-time flip averaging.

    python -m training.recalibrate --model models/effnet-lite2-resize224-soup --data ../shared/data/faces \
        --test-time-flip

The split, face margin and preprocessing come from the folder's `train_config.json`. The stored temperature is
unfolded from the classifier first, so temperature and threshold are fitted afresh on the scores the folder will
give from now on (on this machine's arithmetic). The old test evaluation no longer describes the model and is removed;
rerun `training.evaluate --update-card`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import datasets
import torch

from hub_utils.card import write_model_card
from hub_utils.constants import EVALUATION_NAME
from hub_utils.faces import FaceFinder
from hub_utils.model_folder import DeepfakeConfig, ModelFolderError, load_model, save_model_folder
from training.calibrate import fold_temperature
from training.config import TrainConfig
from training.data import DataError
from training.train import Validator, build_splits, calibrate

TRAIN_CONFIG_NAME = "train_config.json"


def recalibrate(folder: Path, data: list[str], test_time_flip: bool, face_cache: str | None = None) -> DeepfakeConfig:
    """Refit temperature and threshold of `folder` on its validation split and rewrite the folder and its card."""
    folder = Path(folder)
    model, previous, config = read_trained_folder(folder)
    config.data, config.test_time_flip = list(data), test_time_flip
    if face_cache:
        config.face_cache = face_cache
    return refit(model, config, build_splits(config)["validation"], previous, folder)


def read_trained_folder(folder: Path) -> tuple[torch.nn.Module, DeepfakeConfig, TrainConfig]:
    """A trained folder's model with its folded temperature taken out, its deepfake section and its training config."""
    model, _, deepfake = load_model(folder)
    config_path = folder / TRAIN_CONFIG_NAME
    if not config_path.is_file():
        raise ModelFolderError(f"{folder}: no {TRAIN_CONFIG_NAME}, so its split and recipe cannot be rebuilt.")
    fold_temperature(model, 1.0 / deepfake.temperature)
    return model, deepfake, TrainConfig.from_file(config_path)


def refit(model: torch.nn.Module, config: TrainConfig, validation: datasets.Dataset, previous: DeepfakeConfig,
          folder: Path) -> DeepfakeConfig:
    """Fit temperature and threshold of a model with no folded temperature on the `validation` split, then write it
    to `folder` with `previous`'s face crop and training data, and its card."""
    validator = Validator(validation, FaceFinder(config.face_cache))
    deepfake = calibrate(model, validator, config)
    deepfake.face_crop, deepfake.training_data = previous.face_crop, previous.training_data
    save_model_folder(model, folder, deepfake)
    (folder / EVALUATION_NAME).unlink(missing_ok=True)
    write_model_card(folder)
    return deepfake


def calibration_summary(deepfake: DeepfakeConfig) -> str:
    metrics = deepfake.metrics["validation_neutral"]
    return (f"temperature {deepfake.temperature:.4f}, threshold {deepfake.threshold:.4f}, validation balanced accuracy "
            f"{metrics['balanced_accuracy']:.4f}, AUC {metrics['roc_auc']:.4f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.recalibrate", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="local model folder with train_config.json")
    parser.add_argument("--data", nargs="+", required=True, help="the sources it was trained on")
    parser.add_argument("--test-time-flip", action="store_true", help="average each face with its mirror image")
    parser.add_argument("--face-cache", help="face box cache (default: the training run's)")
    args = parser.parse_args(argv)
    try:
        deepfake = recalibrate(Path(args.model), args.data, args.test_time_flip, args.face_cache)
    except (ModelFolderError, DataError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{args.model}: {calibration_summary(deepfake)}; rerun training.evaluate --update-card for the test figures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
