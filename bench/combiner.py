"""The two default models combined (#51): the frozen CLIP head's and the EfficientNet soup's logits joined by a
logistic regression fitted on validation scores, measured by leave-one-out on images the soup never saw.

    python -m bench.combiner --config training/configs/clip-vitb16-probe.json --groups modern_fakes new_reals

The soup (`--soup`, a trained model folder) is taken as shipped: it scores every image once, neutrally re-encoded,
through `bench.common.detector_scores` (kept in `--soup-scores`). Per left-out group, on `bench.leave_one_out`'s
masks narrowed to the images the soup neither trained nor calibrated on (its `seen_images.json`):

- `head`: the recipe's head fitted without the group (`training.frozen_head.fit_and_calibrate`, cached features);
- `soup`: the soup's P(fake) at its own threshold;
- `head+soup`: a logistic regression over both logits, fitted on the validation images left, then calibrated and
  thresholded on them as training does (`fit_calibration`).

All three are scored on the same images: the left-out ones with the test split's images of the class they lack, and
the seen test images.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.special import expit, logit
from sklearn.linear_model import LogisticRegression

from bench.common import GROUP_SETS, detector_scores, every_row, exclusion_rules, figures_at, masks_for, rule_mask
from hub_utils.constants import SEEN_IMAGES_NAME
from hub_utils.detector import load_detector
from training.calibrate import fit_calibration
from training.config import TrainConfig
from training.features import FeatureCache
from training.frozen_head import Examples, build_detector, fit_and_calibrate, region_tokens
from training.perturb import neutral_reencode


def seen_by(folder: Path, paths: list[str]) -> np.ndarray:
    """Which of `paths` the model folder trained or calibrated on (its `seen_images.json`)."""
    seen = json.loads((folder / SEEN_IMAGES_NAME).read_text())
    return np.isin(paths, seen["trained"] + seen["calibrated"])


def unseen_masks(masks: dict[str, np.ndarray], seen: np.ndarray) -> dict[str, np.ndarray]:
    """`bench.common.masks_for`'s masks without the images in `seen`, except the training rows (the head's own)."""
    return {name: mask if name == "train" else mask & ~seen for name, mask in masks.items()}


def logits(scores: np.ndarray) -> np.ndarray:
    return logit(np.clip(scores, 1e-7, 1 - 1e-7))


def soup_scores(folder: Path, config: TrainConfig, rows, path: Path) -> np.ndarray:
    """The soup's P(fake) of every row after neutral re-encoding, computed once and kept at `path` with the rows'
    paths (recomputed when they differ)."""
    paths = np.asarray(rows["path"])
    if path.is_file():
        stored = np.load(path)
        if np.array_equal(stored["paths"], paths):
            return stored["scores"]
    scores = detector_scores([str(folder)], rows, np.ones(len(rows), bool), config.face_cache)
    if np.isnan(scores).any():
        raise SystemExit(f"{folder} could not score {', '.join(paths[np.isnan(scores)][:5])}")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, paths=paths, scores=scores)
    return scores


def run_group(name: str, config: TrainConfig, rows, splits: np.ndarray, head_examples: Examples,
              soup: np.ndarray, soup_threshold: float, soup_seen: np.ndarray, spec) -> dict:
    """The three scorers' rows for one left-out group."""
    labels = np.asarray(rows["label"])
    left_out = rule_mask(rows, exclusion_rules(name))
    masks = masks_for(splits, labels, left_out, np.zeros(len(labels), bool))
    train = masks["train"] & ~rule_mask(rows, config.holdout)
    head, fitted, _ = fit_and_calibrate(spec, head_examples.subset(train), head_examples.subset(masks["validation"]),
                                        config)
    head_scores = head.scores(head_examples.tokens, config.test_time_flip)
    clean = unseen_masks(masks, soup_seen)
    evidence = np.stack([logits(head_scores), logits(soup)], axis=1)
    fit_rows = np.flatnonzero(clean["validation"])
    combiner = LogisticRegression(C=1.0).fit(evidence[fit_rows], labels[fit_rows])
    combined = combiner.predict_proba(evidence)[:, 1]
    calibration = fit_calibration(combined[fit_rows], labels[fit_rows])
    combined = expit(logits(combined) / calibration["temperature"])
    return {"left_out": name, "validation_images": len(fit_rows), "head_threshold": fitted["threshold"],
            "combiner": [*combiner.coef_[0].tolist(), float(combiner.intercept_[0])],
            "head": figures_at(head_scores, labels, clean, fitted["threshold"]),
            "soup": figures_at(soup, labels, clean, soup_threshold),
            "head+soup": figures_at(combined, labels, clean, calibration["threshold"])}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True, help="the frozen-head recipe")
    parser.add_argument("--groups", nargs="+", required=True, help="left-out group names or sets (bench.common)")
    parser.add_argument("--soup", type=Path, default=Path("models/effnet-lite2-resize224-soup"))
    parser.add_argument("--soup-scores", type=Path, default=Path(".cache/combiner/soup_scores.npz"))
    parser.add_argument("--output", type=Path, default=Path("reports/experiments/combiner.json"))
    args = parser.parse_args(argv)
    config = TrainConfig.from_file(args.config)
    rows, splits = every_row(config)
    soup = soup_scores(args.soup, config, rows, args.soup_scores)
    soup_seen = seen_by(args.soup, list(rows["path"]))
    detector = build_detector(config)
    labels = np.asarray(rows["label"])
    cache = FeatureCache(detector, config.frozen_head.feature_cache)
    head_examples = Examples(region_tokens(cache, rows, neutral_reencode, "head features"), labels,
                             np.asarray(rows["generator"]), np.full(len(rows), "neutral"), np.arange(len(rows)))
    soup_threshold = load_detector(str(args.soup)).threshold
    results = []
    for name in [g for name in args.groups for g in (GROUP_SETS.get(name) or [name])]:
        results.append(run_group(name, config, rows, splits, head_examples, soup, soup_threshold, soup_seen,
                                 detector.model.spec))
        print(json.dumps(results[-1]), flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"settings": {k: str(v) for k, v in vars(args).items()}, "rows": results},
                                      indent=1))


if __name__ == "__main__":
    main()
