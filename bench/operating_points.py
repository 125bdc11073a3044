"""Operating points of leave-one-out runs: how much of the unseen accuracy the threshold rule, not the ranking, decides.

    python -m bench.operating_points runs/leave_one_out/generator-stylegan-resize runs/leave_one_out/rees451_lfw-resize

Each folder is a `bench.leave_one_out` run (its `train_config.json` names what was left out). Its validation split, the
left-out images and the seen test images are scored once through the inference path after neutral re-encoding, as
`bench.leave_one_out` scores them. The threshold then comes from the validation split by one of two rules:
`validation BA`, the training's own (`training.calibrate.best_threshold`, which every shipped model uses), or
`real recall Q`, the threshold that calls the share Q of the validation reals real. The second looks at reals only,
so no generator in the validation split decides it; its price is a false-alarm rate of 1 - Q on reals like those.
A rule that held every real source of the validation split at a recall was measured on 2026-12-07 and retired
(docs/experiments.md; commit b459632 has it).
A frozen-backbone run is scored from its cached features (`bench.common.frozen_head_scores`), which gives the same
P(fake) as the inference path in a fraction of the time.
`RUN,RUN` scores the ensemble of runs that share a split and what they left out (the mean P(fake), as
`hub_utils.ensemble` averages models in the app), with every threshold chosen on the ensemble's own scores.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from bench.common import (
    VALIDATION_RULE,
    detector_scores,
    every_row,
    figures_at,
    masks_for,
    operating_points_table,
    rule_mask,
    save_rows,
)
from hub_utils.constants import TRAIN_CONFIG_NAME
from hub_utils.kinds import FROZEN_HEAD
from training.calibrate import best_threshold
from training.config import TrainConfig

MEMBER_SEPARATOR = ","  # RUN,RUN: the ensemble of runs trained on one split
SPLIT_KEYS = ("data", "split_seed", "exclude", "holdout")


def real_recall_threshold(real_scores: np.ndarray, recall: float) -> float:
    """The threshold below which the share `recall` of these reals' P(fake) falls (they are called real)."""
    return float(np.quantile(real_scores, recall))


def operating_points(scores: np.ndarray, labels: np.ndarray, masks: dict[str, np.ndarray],
                     recalls: list[float]) -> list[dict]:
    """One row per threshold rule: the threshold from the `validation` rows, and the figures on `unseen` and `seen`."""
    validation = masks["validation"]
    validation_reals = scores[validation & (labels == 0)]
    rules = [(VALIDATION_RULE, best_threshold(scores[validation], labels[validation]))]
    rules += [(f"real recall {recall}", real_recall_threshold(validation_reals, recall)) for recall in recalls]
    return [{"rule": rule, "validation_real_recall": float(np.mean(validation_reals < threshold)),
             **figures_at(scores, labels, masks, threshold)} for rule, threshold in rules]


def shared_split(folders: list[Path]) -> TrainConfig:
    """The first run's config, once every run is known to share its split and what it left out (an ensemble's rows
    are only unseen if no member trained on them)."""
    configs = [TrainConfig.from_dict(json.loads((folder / TRAIN_CONFIG_NAME).read_text())) for folder in folders]
    for key in SPLIT_KEYS:
        values = {folder.name: getattr(config, key) for folder, config in zip(folders, configs)}
        if len({json.dumps(value) for value in values.values()}) > 1:
            raise ValueError(f"an ensemble needs runs of one split: they differ in {key}: {values}")
    return configs[0]


def run_points(folders: list[Path], config: TrainConfig, recalls: list[float]) -> list[dict]:
    """Score a leave-one-out run folder, or the ensemble of several (`config`: their `shared_split`), once and read
    every operating point off those scores."""
    every, split_names = every_row(config)
    labels = np.asarray(every["label"])
    left_out = rule_mask(every, config.exclude)
    masks = masks_for(split_names, labels, left_out, threshold_from=np.zeros_like(left_out))
    scored = masks["validation"] | masks["unseen"] | masks["seen"]
    feature_cache = config.frozen_head.feature_cache if config.kind == FROZEN_HEAD.name else None
    scores = detector_scores([str(folder) for folder in folders], every, scored, config.face_cache, feature_cache)
    run = MEMBER_SEPARATOR.join(folder.name for folder in folders)
    return [{"run": run, **row} for row in operating_points(scores, labels, masks, recalls)]


def point_key(row: dict) -> tuple[str, str]:
    return row["run"], row["rule"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.operating_points", description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="bench.leave_one_out run folders; RUN,RUN scores their ensemble")
    parser.add_argument("--real-recalls", nargs="+", type=float, default=[0.95, 0.9, 0.85], dest="real_recalls",
                        help="validation real recalls that set the other thresholds")
    parser.add_argument("--output", type=Path, default=Path("reports/operating_points.json"),
                        help="JSON rows, merged with other rows already there (default reports/operating_points.json)")
    args = parser.parse_args(argv)
    runs = [[Path(folder) for folder in run.split(MEMBER_SEPARATOR)] for run in args.runs]
    missing = [str(folder) for folders in runs for folder in folders if not (folder / TRAIN_CONFIG_NAME).is_file()]
    if missing:
        parser.error(f"not leave-one-out run folders (no {TRAIN_CONFIG_NAME}): {', '.join(missing)}")
    try:
        configs = [shared_split(folders) for folders in runs]  # every ensemble checked before anything is scored
    except ValueError as error:
        parser.error(str(error))
    rows = [row for folders, config in zip(runs, configs) for row in run_points(folders, config, args.real_recalls)]
    print(operating_points_table(save_rows(args.output, rows, point_key)))


if __name__ == "__main__":
    main()
