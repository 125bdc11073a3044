"""Operating points of leave-one-out runs: how much of the unseen accuracy the threshold rule, not the ranking, decides.

    python -m bench.operating_points runs/leave_one_out/generator-stylegan-resize runs/leave_one_out/rees451_lfw-resize

Each folder is a `bench.leave_one_out` run (its `train_config.json` names what was left out). Its validation split, the
left-out images and the seen test images are scored once through the inference path after neutral re-encoding, as
`bench.leave_one_out` scores them. The threshold then comes from the validation split by one of two rules:
`validation BA`, the training's own (`training.calibrate.best_threshold`, which every shipped model uses), or
`real recall Q`, the threshold that calls the share Q of the validation reals real. The second looks at reals only,
so no generator in the validation split decides it; its price is a false-alarm rate of 1 - Q on reals like those.
`RUN,RUN` scores the ensemble of runs that share a split and what they left out (the mean P(fake), as
`hub_utils.ensemble` averages models in the app), with every threshold chosen on the ensemble's own scores.
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from bench.feature_probe import detector_scores, figures_at, masks_for
from bench.leave_one_out import every_row, rule_mask, save_rows
from training.calibrate import best_threshold
from training.config import TrainConfig
from training.recalibrate import TRAIN_CONFIG_NAME

MEMBER_SEPARATOR = ","  # RUN,RUN: the ensemble of runs trained on one split
SPLIT_KEYS = ("data", "split_seed", "exclude", "holdout")
VALIDATION_RULE = "validation BA"


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
            raise SystemExit(f"an ensemble needs runs of one split: they differ in {key}: {values}")
    return configs[0]


def run_points(folders: list[Path], config: TrainConfig, recalls: list[float]) -> list[dict]:
    """Score a leave-one-out run folder, or the ensemble of several (`config`: their `shared_split`), once and read
    every operating point off those scores."""
    every, split_names = every_row(config)
    labels = np.asarray(every["label"])
    left_out = rule_mask(every, config.exclude)
    masks = masks_for(split_names, labels, left_out, threshold_from=np.zeros_like(left_out))
    scored = masks["validation"] | masks["unseen"] | masks["seen"]
    scores = detector_scores([str(folder) for folder in folders], every, scored, config.face_cache)
    run = MEMBER_SEPARATOR.join(folder.name for folder in folders)
    return [{"run": run, **row} for row in operating_points(scores, labels, masks, recalls)]


def point_key(row: dict) -> tuple[str, str]:
    return row["run"], row["rule"]


def format_table(rows: list[dict]) -> str:
    lines = ["| run | threshold rule | threshold | validation real recall | unseen AUC | unseen bal. acc | "
             "unseen fake recall | unseen real recall | seen-test bal. acc |", "|" + "---|" * 9]
    lines += [f"| {r['run']} | {r['rule']} | {r['threshold']:.3f} | {r['validation_real_recall']:.3f} | "
              f"{r['unseen_roc_auc']:.3f} | {r['unseen_balanced_accuracy']:.3f} | {r['unseen_fake_recall']:.3f} | "
              f"{r['real_recall']:.3f} | {r['seen_balanced_accuracy']:.3f} |" for r in rows]
    return "\n".join(lines)


def rule_summary(rows: list[dict]) -> list[dict]:
    """Each threshold rule over every run that has it and the training's rule: mean and minimum unseen balanced
    accuracy, mean seen-test balanced accuracy, and in how many runs it scores the unseen images above the training's
    rule."""
    by_run: dict[str, dict[str, dict]] = defaultdict(dict)
    for row in rows:
        by_run[row["run"]][row["rule"]] = row
    summary = []
    for rule in dict.fromkeys(row["rule"] for row in rows):
        runs = [points for points in by_run.values() if rule in points and VALIDATION_RULE in points]
        unseen = [points[rule]["unseen_balanced_accuracy"] for points in runs]
        summary.append({"rule": rule, "runs": len(runs), "unseen_mean": float(np.mean(unseen)),
                        "unseen_min": float(np.min(unseen)),
                        "seen_mean": float(np.mean([points[rule]["seen_balanced_accuracy"] for points in runs])),
                        "above_validation_rule": sum(points[rule]["unseen_balanced_accuracy"]
                                                     > points[VALIDATION_RULE]["unseen_balanced_accuracy"]
                                                     for points in runs)})
    return summary


def format_summary(summary: list[dict]) -> str:
    lines = ["| threshold rule | runs | mean unseen bal. acc | min unseen bal. acc | mean seen-test bal. acc | "
             f"runs above {VALIDATION_RULE} |", "|" + "---|" * 6]
    lines += [f"| {s['rule']} | {s['runs']} | {s['unseen_mean']:.3f} | {s['unseen_min']:.3f} | {s['seen_mean']:.3f} | "
              f"{s['above_validation_rule']} |" for s in summary]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="bench.leave_one_out run folders; RUN,RUN scores their ensemble")
    parser.add_argument("--real-recalls", nargs="+", type=float, default=[0.95, 0.9, 0.85], dest="real_recalls",
                        help="validation real recalls that set the other thresholds")
    parser.add_argument("--output", type=Path, default=Path("reports/operating_points.json"))
    args = parser.parse_args()
    runs = [[Path(folder) for folder in run.split(MEMBER_SEPARATOR)] for run in args.runs]
    missing = [str(folder) for folders in runs for folder in folders if not (folder / TRAIN_CONFIG_NAME).is_file()]
    if missing:
        raise SystemExit(f"not leave-one-out run folders (no {TRAIN_CONFIG_NAME}): {', '.join(missing)}")
    configs = [shared_split(folders) for folders in runs]  # every ensemble checked before anything is scored
    rows = [row for folders, config in zip(runs, configs) for row in run_points(folders, config, args.real_recalls)]
    print(format_table(save_rows(args.output, rows, point_key)))


if __name__ == "__main__":
    main()
