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

from hub_utils.model_folder import DeepfakeConfig, ModelFolderError
from training.data import DataError
from training.pipeline import build_splits, calibration_summary, read_trained_folder, refit


def recalibrate(folder: Path, data: list[str], test_time_flip: bool, face_cache: str | None = None) -> DeepfakeConfig:
    """Refit temperature and threshold of `folder` on its validation split and rewrite the folder and its card."""
    folder = Path(folder)
    model, previous, config = read_trained_folder(folder)
    config.data, config.test_time_flip = list(data), test_time_flip
    if face_cache:
        config.face_cache = face_cache
    return refit(model, config, build_splits(config)["validation"], previous, folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.recalibrate", description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="append", required=True,
                        help="local model folder with train_config.json; repeat for several (each refitted alone)")
    parser.add_argument("--data", nargs="+", required=True, help="the sources they were trained on")
    parser.add_argument("--test-time-flip", action="store_true", help="average each face with its mirror image")
    parser.add_argument("--face-cache", help="face box cache (default: the training run's)")
    args = parser.parse_args(argv)
    for folder in args.model:
        try:
            deepfake = recalibrate(Path(folder), args.data, args.test_time_flip, args.face_cache)
        except (ModelFolderError, DataError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(f"{folder}: {calibration_summary(deepfake)}; rerun training.evaluate --update-card for the test figures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
