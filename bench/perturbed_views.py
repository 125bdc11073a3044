"""Blur and crop as training views of the frozen CLIP head (#51), measured by leave-one-out against the recipe's head.

    python -m bench.perturbed_views --config training/configs/clip-vitb16-probe.json \
        --groups modern_fakes new_reals stylegan attribute_gans diffusion none

Each training image is neutrally re-encoded and draws one perturbation of the challenge ladder by its content
(`drawn_perturbation`); where it draws one of `--perturbations`, that perturbed copy trains beside the neutral view
at `--weight` of an image's weight. Per left-out group (`none`: nothing left out, the test split), on
`bench.leave_one_out`'s masks, `head` (neutral view only, the recipe) and `head+perturbed` are fitted, calibrated
and thresholded as training does; `none` also scores the test split under blur and crop at medium severity.
`--split-seed` draws the splits with another seed (a replication).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench.common import GROUP_SETS, every_row, exclusion_rules, figures_at, masks_for, rule_mask
from hub_utils.images import content_hash
from training.calibrate import fit_calibration
from training.config import TrainConfig
from training.dataset import image_of
from training.deepfake_metrics import compute_metrics
from training.features import FeatureCache
from training.frozen_head import (
    Examples,
    build_detector,
    fit_features,
    largest_region_features,
    region_tokens,
    sample_weights,
)
from training.perturb import PERTURBATIONS, neutral_reencode

LADDER = [(name, severity) for name, ladder in PERTURBATIONS.items() for severity in ladder]
NOTHING = "none"


def drawn_perturbation(neutral) -> tuple[str, str]:
    """The (name, severity) a neutrally re-encoded image draws by its content (as at commit 8d270b4, so that the
    features cached then are found again)."""
    return LADDER[int(content_hash(neutral)[:8], 16) % len(LADDER)]


def perturbed_view(image):
    neutral = neutral_reencode(image)
    name, severity = drawn_perturbation(neutral)
    return PERTURBATIONS[name][severity](neutral)


def medium_view(name: str):
    """The neutrally re-encoded image under perturbation `name` at medium severity, as `training.evaluate` has it."""
    return lambda image: PERTURBATIONS[name]["medium"](neutral_reencode(image))


def perturbed_examples(cache: FeatureCache, rows, kept: set[str]) -> Examples:
    """The rows whose drawn perturbation is in `kept`, in that perturbed view."""
    drawn = np.array([drawn_perturbation(neutral_reencode(image_of(row)))[0] in kept for row in rows])
    index = np.flatnonzero(drawn)
    chosen = rows.select(index)
    return Examples(region_tokens(cache, chosen, perturbed_view, "perturbed view"), np.asarray(chosen["label"]),
                    np.asarray(chosen["generator"]), np.full(len(index), "perturbed"), index)


def weighted(examples: Examples, weight: float) -> np.ndarray:
    """`sample_weights`, the perturbed view's examples at `weight` of an image's weight, scaled to a mean of 1."""
    weights = sample_weights(examples)
    weights[examples.views == "perturbed"] *= weight
    return weights * len(weights) / weights.sum()


def fitted_scores(spec, train: Examples, validation: Examples, weight: float, config: TrainConfig,
                  scored: list[list[np.ndarray]]) -> tuple[list[np.ndarray], float]:
    """Fit on `train`, calibrate on `validation` as training does; P(fake) of each token list in `scored`, and the
    threshold."""
    features = largest_region_features(spec, train, config.test_time_flip)
    head, _ = fit_features(spec, features, train.labels, weighted(train, weight), config.frozen_head.probe_c)
    fitted = fit_calibration(head.scores(validation.tokens, config.test_time_flip), validation.labels)
    head = head.scaled(fitted["temperature"])
    return [head.scores(tokens, config.test_time_flip) for tokens in scored], fitted["threshold"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True, help="the frozen-head recipe")
    parser.add_argument("--groups", nargs="+", required=True,
                        help="left-out groups, sets or families (bench.common); none: nothing left out")
    parser.add_argument("--perturbations", nargs="+", default=["blur", "crop"])
    parser.add_argument("--weight", type=float, default=0.1)
    parser.add_argument("--split-seed", type=int, help="default: the recipe's")
    parser.add_argument("--output", type=Path, default=Path("reports/experiments/perturbed_views.json"))
    args = parser.parse_args(argv)
    config = TrainConfig.from_file(args.config)
    if args.split_seed is not None:
        config = replace(config, split_seed=args.split_seed)
    rows, splits = every_row(config)
    detector = build_detector(config)
    spec, cache = detector.model.spec, FeatureCache(detector, config.frozen_head.feature_cache)
    labels = np.asarray(rows["label"])
    neutral = Examples(region_tokens(cache, rows, neutral_reencode, "neutral view"), labels,
                       np.asarray(rows["generator"]), np.full(len(rows), "neutral"), np.arange(len(rows)))
    perturbed = perturbed_examples(cache, rows, set(args.perturbations))
    test = np.flatnonzero(splits == "test")
    names = [group for item in args.groups for group in (GROUP_SETS.get(item) or [item])]
    test_views = {f"{kind}:medium": region_tokens(cache, rows.select(test), medium_view(kind), f"test {kind}")
                  for kind in ("blur", "crop") if NOTHING in names}
    results = []
    for name in names:
        left_out = np.zeros(len(rows), bool) if name == NOTHING else rule_mask(rows, exclusion_rules(name))
        masks = masks_for(splits, labels, left_out, np.zeros(len(rows), bool))
        train = masks["train"] & ~rule_mask(rows, config.holdout)
        validation = neutral.subset(masks["validation"])
        result = {"left_out": name, "split_seed": config.split_seed,
                  "perturbed_training_images": int(perturbed.subset(train).labels.size)}
        for scorer, examples in (("head", neutral.subset(train)),
                                 ("head+perturbed", Examples.concatenate([neutral.subset(train),
                                                                          perturbed.subset(train)]))):
            (scores, *perturbed_test), threshold = fitted_scores(
                spec, examples, validation, args.weight, config, [neutral.tokens, *test_views.values()])
            result[scorer] = figures_at(scores, labels, masks, threshold)
            if name == NOTHING:
                result[scorer] |= {f"test_balanced_accuracy_{view}": compute_metrics(labels[test], view_scores,
                                                                                     threshold)["balanced_accuracy"]
                                   for view, view_scores in zip(test_views, perturbed_test)}
        results.append(result)
        print(json.dumps(result), flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"settings": {k: str(v) for k, v in vars(args).items()}, "rows": results},
                                      indent=1))


if __name__ == "__main__":
    main()
