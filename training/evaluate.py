"""Evaluate detectors through the one inference path, overall and per generator, source and perturbation.

    python -m training.evaluate --model models/effnet-lite0-resize192 --data ../shared/data/faces --split test \
        --neutral --perturbations all --output reports/lite0.json --update-card

One prediction per image (as fake as its most fake face). Several `--model`s are also scored as their ensemble.
`per_processing` splits the images into processing-matched sources (real and fake files alike in size and format,
where the shortcut audit sits at chance) and the rest; which sources match is decided on every image of the sources,
as the audit does, not on the evaluated split alone.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from hub_utils.ensemble import ENSEMBLE_NAME, load_ensemble
from hub_utils.model_folder import ModelFolderError
from hub_utils.scoring import prepare_output
from training.data import DataError, load_sources
from training.evaluation import SUMMARY_KEYS, evaluate, select_split, skip_seen, update_card, write_ensemble
from training.quality import processing_matched_sources
from training.report import plot_evaluation


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="append", required=True, help="model folder or Hub id; repeat for several")
    parser.add_argument("--data", nargs="+", required=True, help="sources, as for training")
    parser.add_argument("--output", required=True, help="report JSON; plots are written beside it")
    parser.add_argument("--split", help="train, validation or test of the loader's split (default: every image)")
    parser.add_argument("--split-seed", type=int, default=0, dest="split_seed",
                        help="seed of the train/validation/test split, as training's --split-seed (default 0)")
    parser.add_argument("--perturbations", help="'all', or a comma list of names, name:severity items and severities "
                             "('medium': every perturbation at medium severity)")
    parser.add_argument("--neutral", action="store_true", help="neutral re-encoding first (format-free evaluation)")
    parser.add_argument("--skip-seen", action="store_true",
                        help="leave out the images any model trained on, or was calibrated on outside the evaluated "
                             "images (its seen_images.json): for models trained on an earlier split or data")
    parser.add_argument("--ensemble-threshold", type=float, help="default: models/ensemble.json or 0.5")
    parser.add_argument("--update-card", action="store_true", help="write the results into each local model's card")
    parser.add_argument("--write-ensemble", metavar="PATH", help="choose the ensemble's threshold on these images "
                        "(use the validation split) and write it with the members to PATH, e.g. models/ensemble.json")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        prepare_output(args.output)
        ensemble = load_ensemble(args.model, args.ensemble_threshold)
        everything = load_sources(args.data)
        dataset = select_split(everything, args.split, args.split_seed)
        if args.skip_seen:
            dataset = skip_seen(dataset, args.model)
    except (ModelFolderError, DataError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    reports = evaluate(ensemble, dataset, args.neutral, args.perturbations, processing_matched_sources(everything))
    output = Path(args.output)
    plot_dirs = {name: output.parent / f"{output.stem}_{Path(name).name}" for name in reports}
    for name, report in reports.items():
        plot_evaluation(np.asarray(report["labels"]), np.nan_to_num(np.asarray(report["scores"]), nan=0.5),
                        report["threshold"], report, plot_dirs[name])
    summary = reports if len(reports) > 1 else next(iter(reports.values()))
    output.write_text(json.dumps(summary, indent=2) + "\n")
    if args.write_ensemble:
        key = ENSEMBLE_NAME if len(reports) > 1 else ensemble.detectors[0].name
        write_ensemble(Path(args.write_ensemble), args.model, reports[key], args.split)
    if args.update_card:
        for detector, source in zip(ensemble.detectors, args.model):
            if Path(source).is_dir():
                update_card(Path(source), reports[detector.name], args.split, plot_dirs[detector.name])
    for name, report in reports.items():
        print(f"{name}: " + ", ".join(f"{k}={report[k]:.4f}" if isinstance(report[k], float) else f"{k}={report[k]}"
                                      for k in SUMMARY_KEYS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
