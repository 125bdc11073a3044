"""Choose a frozen-backbone recipe's options by leave-one-out on the training and validation splits (never the test
split), from cached features: which blocks and tokens feed the head, its regularization, mirror-image averaging,
the training views, and (one feature cache per setting) face crop or whole image.

    python -m bench.frozen_head_choices --config training/configs/clip-vitb16-probe.json
    python -m bench.frozen_head_choices --config ... --face-margin whole --candidates blocks=6,8,10,12/tokens=cls+patch

For each candidate and each left-out group (`LEFT_OUTS`: a generator family, generators, or real sources), the head
is fitted as `training.frozen_head` fits it, on the train split without the group (and without the recipe's
held-out generators), and calibrated on the validation split without the group. It is then scored on every image of
the group, completed by the validation split's images of the class the group lacks: the test split is never read.
A `none` row is the in-distribution check: nothing left out, scored on the validation split, neutrally re-encoded
and under each of --perturbations (robustness). Rows go to --output;
the summary ranks candidates by the mean over groups of unseen AUC and of balanced accuracy at the validation
threshold.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench.common import exclusion_rules, rule_mask
from hub_utils.feature_model import FrozenBackbone
from training.config import TrainConfig
from training.deepfake_metrics import compute_metrics
from training.features import FeatureCache
from training.frozen_head import Examples, build_detector, examples, fit_and_calibrate, view_examples
from training.perturb import PERTURBATIONS, PerturbationError, iter_perturbations, neutral_reencode
from training.pipeline import build_splits

LEFT_OUTS = ["generator=stylegan", "attribute_gans", "diffusion", "generator=flux1_pro+flux1_dev+flux1_schnell",
             "generator=stable_diffusion_2_1", "generator=pggan_reimpl", "generator=elegant", "generator=arc2face",
             "generator=gdwct", "rees451_lfw", "serengil_deepface+ageitgey_face_recognition"]
DEFAULT_CANDIDATES = [
    "blocks=6,8,10,12/tokens=cls+patch", "blocks=6,8,10,12/tokens=cls", "blocks=12/tokens=cls+patch",
    "blocks=2,4,6,8,10,12/tokens=cls+patch", "blocks=4,5,6,7,8,9,10,11,12/tokens=cls+patch",
    "blocks=8,10,12/tokens=cls+patch",
]


def parse_candidate(text: str, base: TrainConfig) -> TrainConfig:
    """`blocks=6,8/tokens=cls/c=0.05/flip=0/views=raw+neutral/holdout=sdxl+pggan_reimpl` -> the recipe with those
    settings (`holdout=none`: no generator held out of training)."""
    if base.frozen_head is None:
        raise ValueError(f"the recipe trains a {base.kind} model; compare frozen-head choices on a frozen_head recipe.")
    values = dict(item.split("=", 1) for item in text.split("/"))
    holdout = values.get("holdout")
    options = {"blocks": [int(b) for b in values["blocks"].split(",")] if "blocks" in values else None,
               "tokens": values.get("tokens"), "probe_c": float(values["c"]) if "c" in values else None,
               "train_views": values["views"].split("+") if "views" in values else None}
    changes = {"test_time_flip": values["flip"] == "1" if "flip" in values else None,
               "holdout": None if holdout is None else [] if holdout == "none" else
               [f"generator={g}" for g in holdout.split("+")]}
    section = replace(base.frozen_head, **{key: value for key, value in options.items() if value is not None})
    return replace(base, frozen_head=section, **{key: value for key, value in changes.items() if value is not None})


class Rows:
    """Every train and validation image as `Examples`, per view or perturbation, each read once when first asked."""

    def __init__(self, config: TrainConfig) -> None:
        splits = build_splits(replace(config, holdout=[], exclude=[]))
        self.cache = FeatureCache(build_detector(config), config.frozen_head.feature_cache)
        self.data = {name: splits[name] for name in ("train", "validation")}
        self.read: dict[tuple, Examples] = {}

    def examples(self, split: str, view: str) -> Examples:
        """A split in a training view (`VIEWS`)."""
        key = (split, view)
        if key not in self.read:
            self.read[key] = examples(self.cache, self.data[split], [view])
        return self.read[key]

    def perturbed(self, split: str, name: str, severity: str) -> Examples:
        """A split neutrally re-encoded, then perturbed (every image, `name` at `severity`)."""
        key = (split, name, severity)
        if key not in self.read:
            self.read[key] = view_examples(self.cache, self.data[split], lambda image: PERTURBATIONS[name][severity](
                neutral_reencode(image)), f"{name}:{severity}")
        return self.read[key]

    def mask(self, split: str, rules: list[str]) -> np.ndarray:
        return rule_mask(self.data[split], rules) if rules else np.zeros(len(self.data[split]), bool)


def evaluate_candidate(rows: Rows, config: TrainConfig, left_out: str,
                       perturbations: Sequence[tuple[str, str]] = ()) -> dict:
    """Fit without `left_out` (and the recipe's held-out generators), calibrate on validation without it, and score
    the left-out images plus the validation images of the class they lack (`none`: the validation split, also under
    each (name, severity) of `perturbations`)."""
    rules = [] if left_out == "none" else exclusion_rules(left_out)
    out_train, out_validation = rows.mask("train", rules), rows.mask("validation", rules)
    keep = ~out_train & ~rows.mask("train", config.holdout)
    train = Examples.concatenate([rows.examples("train", view).subset(keep)
                                  for view in config.frozen_head.train_views])
    validation = rows.examples("validation", "neutral")
    spec = FrozenBackbone("unused", tuple(config.frozen_head.blocks), config.frozen_head.tokens)
    head, fitted, _ = fit_and_calibrate(spec, train, validation.subset(~out_validation), config)
    if left_out == "none":
        scored = validation.subset(~out_validation)
    else:
        left = Examples.concatenate([rows.examples("train", "neutral").subset(out_train),
                                     validation.subset(out_validation)])
        lacking = ~np.isin(validation.labels, np.unique(left.labels)) & ~out_validation
        scored = Examples.concatenate([left, validation.subset(lacking)])
    scores = head.scores(scored.tokens, config.test_time_flip)
    metrics = compute_metrics(scored.labels, scores, fitted["threshold"])
    robustness = {}
    for name, severity in perturbations if left_out == "none" else ():
        perturbed = rows.perturbed("validation", name, severity)
        robustness[f"{name}:{severity}"] = compute_metrics(perturbed.labels, head.scores(
            perturbed.tokens, config.test_time_flip), fitted["threshold"])["balanced_accuracy"]
    return {"left_out": left_out, "threshold": fitted["threshold"], "n_fake": int(scored.labels.sum()),
            "n_real": int((scored.labels == 0).sum()), "roc_auc": metrics["roc_auc"],
            "balanced_accuracy": metrics["balanced_accuracy"], "fake_recall": metrics["per_class"]["fake"]["recall"],
            "real_recall": metrics["per_class"]["real"]["recall"],
            "validation_balanced_accuracy": fitted["metrics"]["validation_neutral"]["balanced_accuracy"],
            **({"perturbed_balanced_accuracy": robustness} if robustness else {})}


def summary(results: list[dict]) -> dict:
    """Means and worst values over the left-out groups (the `none` row apart)."""
    groups = [r for r in results if r["left_out"] != "none"]
    none = next((r for r in results if r["left_out"] == "none"), None)
    fakes = [r for r in groups if r["n_fake"] and r["left_out"] not in REAL_SOURCES]
    reals = [r for r in groups if r["left_out"] in REAL_SOURCES]
    return {"mean_auc": float(np.mean([r["roc_auc"] for r in groups])),
            "mean_balanced_accuracy": float(np.mean([r["balanced_accuracy"] for r in groups])),
            "worst_family_auc": min(r["roc_auc"] for r in fakes) if fakes else None,
            "worst_family_balanced_accuracy": min(r["balanced_accuracy"] for r in fakes) if fakes else None,
            "worst_real_recall": min(r["real_recall"] for r in reals) if reals else None,
            "validation_balanced_accuracy": none["balanced_accuracy"] if none else None,
            "validation_perturbed_balanced_accuracy": none.get("perturbed_balanced_accuracy") if none else None}


REAL_SOURCES = ("rees451_lfw", "serengil_deepface+ageitgey_face_recognition")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.frozen_head_choices", description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, required=True, help="the recipe (a training.train config)")
    parser.add_argument("--candidates", nargs="+", default=DEFAULT_CANDIDATES,
                        help="settings to compare, e.g. "
                             "blocks=6,8,10,12/tokens=cls+patch/c=0.05/flip=1/views=neutral+raw")
    parser.add_argument("--face-margin", default=None, help="a face margin, or 'whole' for whole images")
    parser.add_argument("--left-out", nargs="+", default=LEFT_OUTS,
                        help="left-out groups: a family, generator=A+B or a source (A+B); default: the eleven groups "
                             "of LEFT_OUTS")
    parser.add_argument("--perturbations", default="blur:medium,crop:medium",
                        help="the validation split is also scored under these (training.evaluate's syntax: all, none, "
                             "or names and name:severity items; default blur:medium,crop:medium)")
    parser.add_argument("--output", type=Path, default=Path("reports/frozen_head_choices.json"),
                        help="JSON records, replacing earlier records of the same crop and candidates "
                             "(default reports/frozen_head_choices.json)")
    args = parser.parse_args(argv)
    try:  # usage errors: an unreadable --config, a --face-margin that is no number, a malformed candidate
        base = TrainConfig.from_file(args.config)
        if args.face_margin == "whole":
            base = replace(base, face_crop=False)
        elif args.face_margin is not None:
            base = replace(base, face_margin=float(args.face_margin))
        configs = {candidate: parse_candidate(candidate, base) for candidate in args.candidates}
        perturbations = [(name, severity) for name, severity, _ in iter_perturbations(args.perturbations)]
    except (OSError, ValueError, PerturbationError) as error:
        parser.error(str(error))
    crop = "whole image" if not base.face_crop else f"face margin {base.face_margin}"
    rows = Rows(base)
    earlier = json.loads(args.output.read_text()) if args.output.is_file() else []
    records = [r for r in earlier if not (r["crop"] == crop and r["candidate"] in args.candidates)]
    for candidate, config in configs.items():
        results = [evaluate_candidate(rows, config, name, perturbations) for name in ["none", *args.left_out]]
        record = {"crop": crop, "candidate": candidate, "summary": summary(results), "rows": results}
        records.append(record)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(records, indent=1) + "\n")
        print(json.dumps({"crop": crop, "candidate": candidate, **record["summary"]}), flush=True)


if __name__ == "__main__":
    main()
