"""Offline export: N real and N fake (optionally augmented) examples as a `datasets` dataset saved to disk.

A short class is oversampled; its extra copies are always augmented (an identical copy adds nothing). With
`--augment` every example is augmented; with `--no-augment` the first use of each image keeps its original bytes.
Examples are written in shards as they complete, so an interrupted export resumes where it stopped.

    python -m training.export --data ../shared/data/faces --output runs/export --per-class 1000
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from PIL import Image
from tqdm import tqdm

from hub_utils.constants import LABEL_NAMES
from training.augment import AugmentConfig, TrainTransform, build_compose
from training.data import FEATURES, DataError, load_sources, raw_image_bytes
from training.quality import drop_unusable
from training.split import split_dataset

EXPORT_FEATURES = datasets.Features({**FEATURES, "augmented": datasets.Value("bool"), "copy": datasets.Value("int32")})
SETTINGS_NAME = "export.json"
SHARDS_NAME = "shards"


class ExportError(ValueError):
    """The export cannot go ahead as asked."""


@dataclass
class ExportSettings:
    """Everything that decides the exported examples; a resumed export must match it exactly."""

    data: list[str]
    per_class: int
    seed: int = 0  # the sample draw and the augmentations
    augment: bool = True
    split: str = "train"
    image_size: int = 160
    augment_config: dict[str, Any] = field(default_factory=dict)
    shard_size: int = 500
    split_seed: int | None = None  # the train/validation/test split; None: `seed`, as earlier exports drew it


def plan_examples(labels: Sequence[int], per_class: int, seed: int) -> list[tuple[int, int]]:
    """(row index, copy number) for `per_class` examples of each label, classes interleaved.

    A class with enough rows is sampled without replacement; a short one uses every row, then repeats rows
    in fresh random orders (copy 1, 2, ...) until it has `per_class`.
    """
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    per_label = []
    for label in range(len(LABEL_NAMES)):
        rows = np.flatnonzero(labels == label)
        if len(rows) == 0:
            raise ExportError(f"No {LABEL_NAMES[label]} images in the data; add a source that has some.")
        picks: list[tuple[int, int]] = []
        for copy in range(-(-per_class // len(rows))):
            picks += [(int(r), copy) for r in rng.permutation(rows)[: per_class - len(picks)]]
        per_label.append(picks)
    return [example for pair in zip(*per_label) for example in pair]


def _export_row(ds: datasets.Dataset, transform: TrainTransform, settings: ExportSettings, position: int,
                index: int, copy: int) -> dict[str, Any]:
    """One exported example; augmentation is seeded by (seed, position), so a resumed export is identical."""
    row = ds[index]
    data = raw_image_bytes(row["image"])
    augmented = settings.augment or copy > 0
    if augmented:
        transform.compose.set_random_seed(int(np.random.SeedSequence([settings.seed, position]).generate_state(1)[0]))
        pixels = transform(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
        image: Any = Image.fromarray(pixels)
    else:
        image = {"bytes": data, "path": row["image"].get("path")}
    return {**row, "image": image, "augmented": augmented, "copy": copy}



@contextmanager
def _quiet_datasets() -> Iterator[None]:
    """Silence `datasets`' own progress bars (one per shard save) under ours."""
    was_disabled = datasets.utils.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()


def write_shard(rows: list[dict[str, Any]], directory: Path) -> None:
    """Save one shard atomically: written under a temporary name, renamed when complete."""
    partial = directory.with_name(directory.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    datasets.Dataset.from_list(rows, features=EXPORT_FEATURES).save_to_disk(str(partial))
    partial.rename(directory)


def _check_settings(output: Path, settings: ExportSettings) -> None:
    """Record the settings in `output`, or check that a resumed export used the same ones."""
    record = output / SETTINGS_NAME
    if record.is_file():
        previous = {"split_seed": None, **json.loads(record.read_text(encoding="utf-8"))}
        if previous != asdict(settings):
            raise ExportError(f"{output} holds an export with other settings ({previous}); "
                              "choose a new --output or delete that folder.")
    else:
        output.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(asdict(settings), indent=2) + "\n", encoding="utf-8")


def _select(settings: ExportSettings) -> datasets.Dataset:
    ds = drop_unusable(load_sources(settings.data))
    if settings.split == "all":
        return ds
    split_seed = settings.seed if settings.split_seed is None else settings.split_seed
    return split_dataset(ds, seed=split_seed)[settings.split]


def export_dataset(settings: ExportSettings, output: Path) -> datasets.Dataset:
    """Write the export to `output` (resuming completed shards) and return it."""
    if settings.per_class < 1 or settings.shard_size < 1:
        raise ExportError("per_class and shard_size must be at least 1.")
    _check_settings(output, settings)
    if (output / "state.json").is_file():
        return datasets.load_from_disk(str(output))
    ds = _select(settings).cast_column("image", datasets.Image(decode=False))
    plan = plan_examples(ds["label"], settings.per_class, settings.seed)
    cfg = AugmentConfig.from_dict(settings.augment_config)
    transform = TrainTransform(build_compose(cfg, settings.image_size))
    shard_root = output / SHARDS_NAME
    shard_root.mkdir(exist_ok=True)
    starts = range(0, len(plan), settings.shard_size)
    names = [shard_root / f"{i:05d}" for i in range(len(starts))]
    done = sum(settings.shard_size if name.is_dir() else 0 for name in names)
    with _quiet_datasets(), tqdm(total=len(plan), initial=min(done, len(plan)), desc="export", unit="img") as progress:
        for start, name in zip(starts, names):
            if name.is_dir():
                continue
            rows = []
            for position in range(start, min(start + settings.shard_size, len(plan))):
                rows.append(_export_row(ds, transform, settings, position, *plan[position]))
                progress.update()
            write_shard(rows, name)
    exported = datasets.concatenate_datasets([datasets.load_from_disk(str(name)) for name in names])
    exported.save_to_disk(str(output))
    shutil.rmtree(shard_root)
    return datasets.load_from_disk(str(output))


def push_export(output: Path, repo_id: str) -> None:
    """Upload the saved export with `Dataset.push_to_hub`."""
    datasets.load_from_disk(str(output)).push_to_hub(repo_id)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.export", description=__doc__.split("\n")[0])
    parser.add_argument("--data", nargs="+", required=True, help="folder trees, challenge zip folders or Hub ids")
    parser.add_argument("--output", required=True, type=Path, help="folder for the saved dataset")
    parser.add_argument("--per-class", type=int, required=True, help="examples of each of real and fake")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample draw and the augmentations (default 0)")
    parser.add_argument("--split-seed", type=int, dest="split_seed",
                        help="seed of the train/validation/test split (default: the --seed value)")
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True,
                        help="augment every example (default); --no-augment keeps originals where it can")
    parser.add_argument("--split", choices=("train", "validation", "test", "all"), default="train",
                        help="which split to draw from, or all images (default train)")
    parser.add_argument("--image-size", type=int, default=160, help="side of augmented examples")
    parser.add_argument("--augment-config", type=Path, help="JSON file of AugmentConfig settings")
    parser.add_argument("--shard-size", type=int, default=500,
                        help="examples per shard written to disk, the unit an interrupted export resumes from "
                             "(default 500)")
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="also upload the dataset to this Hub repo")
    args = parser.parse_args(argv)
    if args.per_class < 1 or args.shard_size < 1 or args.image_size < 1:
        parser.error("--per-class, --shard-size and --image-size must be at least 1")
    try:
        config = json.loads(args.augment_config.read_text(encoding="utf-8")) if args.augment_config else {}
        AugmentConfig.from_dict(config)
    except (OSError, ValueError) as error:
        parser.error(f"--augment-config {args.augment_config}: {error}")
    settings = ExportSettings(data=list(args.data), per_class=args.per_class, seed=args.seed, augment=args.augment,
                              split=args.split, image_size=args.image_size, augment_config=config,
                              shard_size=args.shard_size, split_seed=args.split_seed)
    try:
        exported = export_dataset(settings, args.output)
        print(f"saved {len(exported)} examples to {args.output}")
        if args.push_to_hub:
            push_export(args.output, args.push_to_hub)
            print(f"pushed to https://huggingface.co/datasets/{args.push_to_hub}")
    except (ExportError, DataError) as error:  # settings that do not fit the data or an earlier export
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: {error}; the export stays in {args.output}, rerun to resume or push again.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
