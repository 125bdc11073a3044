"""Leave-one-family-out: train without a generator family, test on it. The measure of generalization.

    python -m bench.leave_one_out --data ../shared/data/faces --families stylegan attribute_gans diffusion \
        --modes resize crop --epochs 3 --output reports/leave_one_out.json

For each family and preprocessing mode a small EfficientNet-Lite0 (160 px) is trained through `training.train`
with the family excluded from training and validation; it is then scored through the one inference path, after
neutral re-encoding, on every image of the left-out family (none was seen) plus the real images of the test split.
Trained runs are reused when their folder exists.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import datasets

from hub_utils.ensemble import load_ensemble
from training.augment import AugmentConfig
from training.config import TrainConfig
from training.evaluate import evaluate
from training.train import build_splits, run

FAMILIES = {
    "stylegan": ["stylegan", "stylegan2", "stylegan3", "stylegan_family_unverified"],
    "attribute_gans": ["attgan", "stargan"],
    "diffusion": ["flux1_pro", "flux1_dev", "flux1_schnell", "sdxl", "dalle3", "stable_diffusion_1_5"],
}


def held_out_rows(config: TrainConfig, generators: list[str]) -> tuple[datasets.Dataset, datasets.Dataset]:
    """(left-out fakes of every split + test reals, the test split without the family)."""
    splits = build_splits(replace(config, exclude=[]))
    every = datasets.concatenate_datasets([splits[name] for name in splits])
    fakes = every.filter(lambda row: row["generator"] in generators)
    reals = splits["test"].filter(lambda row: row["label"] == 0)
    seen = splits["test"].filter(lambda row: row["generator"] not in generators)
    return datasets.concatenate_datasets([fakes, reals]), seen


def run_one(family: str, mode: str, args: argparse.Namespace) -> dict:
    generators = FAMILIES[family]
    config = TrainConfig(backbone="tf_efficientnet_lite0", pretrained="packaged", data=args.data,
                         output=str(args.runs / f"{family}-{mode}"), epochs=args.epochs, image_size=160,
                         num_workers=1, patience=args.epochs, exclude=[f"generator={g}" for g in generators],
                         augment=AugmentConfig(mode=mode))
    if not (Path(config.output) / "model.safetensors").is_file():
        run(config, resume=(Path(config.output) / "checkpoint").is_dir())
    unseen, seen = held_out_rows(config, generators)
    ensemble = load_ensemble([config.output])
    name = ensemble.detectors[0].name
    unseen_report = evaluate(ensemble, unseen, neutral=True, perturbations=None)[name]
    seen_report = evaluate(ensemble, seen, neutral=True, perturbations=None)[name]
    fake_recall = unseen_report["per_class"]["fake"]["recall"]
    return {"family": family, "mode": mode, "threshold": unseen_report["threshold"],
            "unseen_n_fake": unseen_report["per_class"]["fake"]["support"],
            "unseen_n_real": unseen_report["per_class"]["real"]["support"],
            "unseen_roc_auc": unseen_report["roc_auc"], "unseen_balanced_accuracy": unseen_report["balanced_accuracy"],
            "unseen_fake_recall": fake_recall, "real_recall": unseen_report["per_class"]["real"]["recall"],
            "seen_balanced_accuracy": seen_report["balanced_accuracy"], "seen_roc_auc": seen_report["roc_auc"]}


def format_table(rows: list[dict]) -> str:
    header = ("| left out | mode | fakes | reals | unseen AUC | unseen bal. acc | unseen fake recall | real recall "
              "| seen-test bal. acc | threshold |")
    lines = [header, "|" + "---|" * 10]
    for r in rows:
        lines.append(f"| {r['family']} | {r['mode']} | {r['unseen_n_fake']} | {r['unseen_n_real']} | "
                     f"{r['unseen_roc_auc']:.3f} | {r['unseen_balanced_accuracy']:.3f} | {r['unseen_fake_recall']:.3f} | "
                     f"{r['real_recall']:.3f} | {r['seen_balanced_accuracy']:.3f} | {r['threshold']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", nargs="+", default=["../shared/data/faces"])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--modes", nargs="+", default=["resize"], choices=["resize", "crop"])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--runs", type=Path, default=Path("runs/leave_one_out"))
    parser.add_argument("--output", type=Path, default=Path("reports/leave_one_out.json"))
    args = parser.parse_args()
    rows = [run_one(family, mode, args) for family in args.families for mode in args.modes]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(rows, indent=2) + "\n")
    print(format_table(rows))


if __name__ == "__main__":
    main()
