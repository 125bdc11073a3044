"""Leave one out: train without a generator family, some generators or a source, then test on what was left out.

    python -m bench.leave_one_out --families stylegan attribute_gans diffusion --modes resize crop --epochs 2
    python -m bench.leave_one_out --families --sources basemax_fakefaces rees451_lfw --epochs 2
    python -m bench.leave_one_out --families --sources rees451_lfw --augment downscale_p=0.3 jpeg_p=0.3 --epochs 2
    python -m bench.leave_one_out --families --generators stylegan attgan flux1_pro+flux1_dev+flux1_schnell --epochs 2
    python -m bench.leave_one_out --families --sources zoya2244_140k_subset+eyesthat_game --epochs 2
    python -m bench.leave_one_out --families --groups modern_fakes new_reals --epochs 2

For each left-out family, source or group (`--generators A+B`: the rest of their family still trains; `--sources A+B`:
every image of those sources, reals included; `--groups NAME`: a named group of `bench.common.GROUPS`, such as every
diffusion-era generator or one real collection, or a set of them in `GROUP_SETS`, one run per group) and each
preprocessing mode, a small EfficientNet-Lite0 (160 px) is
trained through `training.train` with those images excluded from training and validation; it is then scored through
the one inference path, after neutral re-encoding, on every left-out image (none was seen), completed by the test
split's images of the class that the left-out images lack (a generator family has no reals; a real-only source no
fakes).
`--augment KEY=VALUE ...` changes augmentation settings from their defaults (a variant, run and reported apart);
`--seed N` repeats a run with other training randomness and, unless `--split-seed` says otherwise, another draw of the
splits (reported apart too);
`--image-size` changes the input side (with `--modes tile`, the patch size of a patch classifier), `--epochs` other
than 2 trains longer or shorter (each reported apart too). `--config FILE` trains that recipe (a `training.train`
config, such as the shipped default's) instead of the small Lite0; its own exclusions and hold-outs stay, and the
flags above still apply. The variants of options retired on 2026-12-05 (`--npr`, `--full-resolution-stem`, ...) stay
in the reports; rerunning them needs commit d2a40e0 (docs/experiments.md, "Retired options").
A trained run is reused while its folder's `seen_images.json` is today's split of the data (a run trained before
the data grew is trained again); rows for other runs already in --output are kept.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from bench.common import (
    FAMILIES,
    GENERATOR_PREFIX,
    GROUP_SETS,
    GROUPS,
    TABLE_EPOCHS,
    every_row,
    exclusion_rules,
    frozen_head_scores,
    held_out_masks,
    leave_one_out_table,
    row_figures,
    rule_mask,
    save_rows,
)
from hub_utils.constants import SEEN_IMAGES_NAME, WEIGHTS_NAME
from hub_utils.detector import load_detector
from hub_utils.ensemble import load_ensemble
from hub_utils.kinds import FROZEN_HEAD
from training.augment import MODES, AugmentConfig
from training.config import TrainConfig
from training.data import DataError
from training.evaluation import build_report, evaluate
from training.pipeline import build_splits
from training.trainers import run


def held_out_rows(config: TrainConfig, rules: list[str]) -> tuple[datasets.Dataset, datasets.Dataset]:
    """(left-out rows of every split + the test split's rows of a class they lack, the test split without them)."""
    every, names = every_row(config)
    unseen, seen = held_out_masks(names, np.asarray(every["label"]), rule_mask(every, rules))
    return every.select(np.flatnonzero(unseen)), every.select(np.flatnonzero(seen))


def parse_settings(items: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` items with JSON values (`jpeg_p=0.3`, `jpeg_quality=[50,100]`)."""
    settings = {}
    for item in items:
        key, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError(item)
            settings[key] = json.loads(value)
        except ValueError:  # also json.JSONDecodeError
            raise ValueError(f"--augment {item!r}: use KEY=VALUE with a JSON value, e.g. jpeg_p=0.3.") from None
    return settings


SMALL_RECIPE = TrainConfig(backbone="tf_efficientnet_lite0", pretrained="packaged", epochs=TABLE_EPOCHS, image_size=160,
                           num_workers=1)


def recipe(args: argparse.Namespace) -> TrainConfig:
    """The recipe every run trains before the bench's changes: `--config`'s, or the small Lite0 at 160 px."""
    return TrainConfig.from_file(args.config) if args.config else SMALL_RECIPE


def variant_of(args: argparse.Namespace) -> str:
    """What sets a run apart from the plain recipe, as the table shows it ("" for the plain recipe)."""
    base = recipe(args)
    parts = [args.config.stem] if args.config else []
    parts += [f"{args.image_size}px"] if args.image_size not in (None, base.image_size) else []
    parts += [f"epochs={args.epochs}"] if args.epochs not in (None, base.epochs) else []
    parts += [f"{key}={json.dumps(value, separators=(',', ':'))}"
              for key, value in parse_settings(args.augment).items()]
    return " ".join(parts)


def run_config(name: str, mode: str, args: argparse.Namespace) -> TrainConfig:
    """The recipe's config without `name`, trained to the end (no early stopping), with the run's training seed and
    split seed."""
    base = recipe(args)
    suffix = "".join(f"-{part}" for part in variant_of(args).replace("=", "").split())
    suffix += f"-seed{args.seed}" if args.seed else ""
    suffix += f"-split{split_seed(args)}" if split_seed(args) != args.seed else ""
    folder = f"{name.replace('=', '-')}-{mode}{suffix}"
    epochs = args.epochs or base.epochs
    augment = AugmentConfig.from_dict({**asdict(base.augment), "mode": mode, **parse_settings(args.augment)})
    return replace(base, data=args.data, output=str(args.runs / folder), epochs=epochs,
                   image_size=args.image_size or base.image_size, patience=epochs,
                   exclude=base.exclude + exclusion_rules(name), seed=args.seed, split_seed=split_seed(args),
                   augment=augment)


def frozen_head_report(folder: str, rows: datasets.Dataset, feature_cache: str) -> dict:
    """A frozen-backbone run's report on neutrally re-encoded rows, scored from cached features."""
    detector = load_detector(folder)
    scores = frozen_head_scores(detector, rows, feature_cache)
    return build_report(np.asarray(rows["label"]), scores, detector.threshold, {"generator": list(rows["generator"])})


def trained_on_todays_split(config: TrainConfig) -> bool:
    """Whether the run's folder holds a model trained and calibrated on exactly the images that its config selects
    from today's data: a run trained before the data grew (or without a record of its images) is trained again."""
    folder = Path(config.output)
    if not (folder / WEIGHTS_NAME).is_file() or not (folder / SEEN_IMAGES_NAME).is_file():
        return False
    seen, splits = json.loads((folder / SEEN_IMAGES_NAME).read_text()), build_splits(config)
    return (seen["trained"] == sorted(splits["train"]["path"])
            and seen["calibrated"] == sorted(splits["validation"]["path"]))


def run_one(name: str, mode: str, args: argparse.Namespace) -> dict:
    """Train the run without `name` (or reuse its folder) and score it: a table row, plus each generator's accuracy
    (the recall of its class) on the left-out images."""
    config = run_config(name, mode, args)
    rules = exclusion_rules(name)
    if not trained_on_todays_split(config):
        folder = Path(config.output)
        run(config, resume=(folder / "checkpoint").is_dir() and not (folder / WEIGHTS_NAME).is_file())
    unseen, seen = held_out_rows(config, rules)
    if config.kind == FROZEN_HEAD.name:  # scored from cached features, as fast as the head was fitted
        unseen_report, seen_report = (frozen_head_report(config.output, rows, config.frozen_head.feature_cache)
                                      for rows in (unseen, seen))
    else:
        ensemble = load_ensemble([config.output])
        model = ensemble.detectors[0].name
        unseen_report = evaluate(ensemble, unseen, neutral=True, perturbations=None)[model]
        seen_report = evaluate(ensemble, seen, neutral=True, perturbations=None)[model]
    per_generator = {generator: {"n": group["n"], "accuracy": group["accuracy"]}
                     for generator, group in unseen_report["per_generator"].items()}
    split = {"split_seed": split_seed(args)} if split_seed(args) != args.seed else {}
    return {"left_out": name, "mode": mode, "variant": variant_of(args), "seed": args.seed, **split,
            **row_figures(unseen_report, seen_report), "unseen_accuracy_per_generator": per_generator}



def split_seed(args: argparse.Namespace) -> int:
    """The run's split seed: `--split-seed`, else the training seed (a repeat redraws the splits too)."""
    return args.seed if args.split_seed is None else args.split_seed


def row_key(row: dict) -> tuple[str, str, str, int, int]:
    seed = row.get("seed", 0)
    return row["left_out"], row["mode"], row.get("variant", ""), seed, row.get("split_seed", seed)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.leave_one_out", description=__doc__.split("\n")[0])
    parser.add_argument("--data", nargs="+", default=["../shared/data/faces"],
                        help="sources, as for training (default ../shared/data/faces)")
    parser.add_argument("--families", nargs="*", default=list(FAMILIES), choices=list(FAMILIES),
                        help="generator families to leave out, one run each (default: all; give none to run only "
                             "--sources and --generators)")
    parser.add_argument("--sources", nargs="+", default=[], metavar="NAME[+NAME...]",
                        help="sources to leave out with their reals and their fakes, one run per item; A+B leaves "
                             "both out in one run (e.g. every source of one generator: new fakes and new reals)")
    parser.add_argument("--generators", nargs="+", default=[], metavar="NAME[+NAME...]",
                        help="generators to leave out while the rest of their family trains, one run per item; "
                             "A+B leaves both out in one run")
    parser.add_argument("--groups", nargs="+", default=[], choices=[*GROUPS, *GROUP_SETS], metavar="NAME",
                        help="named groups to leave out, one run each: "
                             f"{', '.join(GROUPS)}; or a set of them: "
                             + "; ".join(f"{name} ({', '.join(groups)})" for name, groups in GROUP_SETS.items()))
    parser.add_argument("--config", type=Path,
                        help="train this recipe (a training.train config file) instead of the small Lite0 at 160 px")
    parser.add_argument("--modes", nargs="+", choices=MODES,
                        help="the recipe's preprocessing by default; tile: trained on random crops like crop, scored "
                             "on windows covering each face")
    parser.add_argument("--image-size", type=int, dest="image_size",
                        help="model input side (default: the recipe's); with --modes tile, the patch size of a patch "
                             "classifier")
    parser.add_argument("--augment", nargs="*", default=[], metavar="KEY=VALUE", help="augmentation settings to change")
    parser.add_argument("--epochs", type=int, help=f"default: the recipe's ({TABLE_EPOCHS} for the small Lite0)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (initialisation, sampling, augmentation)")
    parser.add_argument("--split-seed", type=int, dest="split_seed",
                        help="seed of the train/validation/test draw (default: --seed, so a repeat redraws the splits "
                             "too, as every row of the report was run)")
    parser.add_argument("--runs", type=Path, default=Path("runs/leave_one_out"),
                        help="folder of the trained runs, reused while they were trained on today's split "
                             "(default runs/leave_one_out)")
    parser.add_argument("--output", type=Path, default=Path("reports/leave_one_out.json"),
                        help="JSON rows, merged with the rows of other runs already there "
                             "(default reports/leave_one_out.json)")
    return parser


def check_left_out(names: list[str], data: list[str]) -> None:
    """Refuse, before any training, a left-out name that no image of `data` matches (a typo would leave nothing out);
    each generator or source of an `A+B` group must match on its own."""
    every, _ = every_row(TrainConfig(data=data))
    for name in names:
        rules = exclusion_rules(name)
        groups = [rules] if name in FAMILIES or name in GROUPS else [[rule] for rule in rules]
        for group in groups:
            if not rule_mask(every, group).any():
                raise ValueError(f"{' / '.join(group)} matches no image of {', '.join(data)}. Generators there: "
                                 f"{', '.join(sorted(set(every['generator'])))}; sources: "
                                 f"{', '.join(sorted(set(every['source'])))}.")


def left_out_names(args: argparse.Namespace) -> list[str]:
    """One name per run: the families, the sources, the generators and the named groups (sets expanded)."""
    groups = [group for name in args.groups for group in GROUP_SETS.get(name, [name])]
    return args.families + args.sources + [GENERATOR_PREFIX + item for item in args.generators] + groups


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    names = left_out_names(args)
    try:  # usage errors, before any training: a bad --augment item, --config file or left-out name, unloadable --data
        parse_settings(args.augment)
        modes = args.modes or [recipe(args).preprocessing]
        recipe(args)  # a --config file that cannot be read
        check_left_out(names, args.data)
    except (OSError, ValueError) as error:
        parser.error(str(error))
    try:
        rows = [run_one(name, mode, args) for name in names for mode in modes]
    except DataError as error:  # finished runs keep their folders, so a rerun reuses them
        raise SystemExit(f"error: {error}") from error
    print(leave_one_out_table(save_rows(args.output, rows, row_key)))


if __name__ == "__main__":
    main()
