"""Look at the data before training: count the splits, cache every face, preview the augmentations.

    python -m training.prepare describe ../shared/data/faces --output splits.json   # counts per split, skipped files
    python -m training.prepare faces ../shared/data/faces       # detect and cache every face before epoch 1
    python -m training.prepare preview --data ../shared/data/faces --output grid.png

Exit status 0 when it ran, 2 on usage errors (a flag, or a source that cannot be loaded or split as asked).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from training.augment import MODES, preview
from training.config import TrainConfig
from training.data import DataError, load_sources
from training.split import describe, format_table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.prepare", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="{describe,faces,preview}")
    cli = commands.add_parser("describe", help="count images per split, label and generator",
                              description="Count images per split, label and generator; list the skipped files.")
    cli.add_argument("sources", nargs="+", help="folder tree, challenge zip folder or Hub dataset id")
    cli.add_argument("--output", required=True, type=Path, help="JSON file to write")
    cli.add_argument("--split-seed", type=int, default=0, dest="split_seed",
                     help="seed of the train/validation/test split (default 0, training's default)")
    cli.add_argument("--challenge-test-labels", help="file of 'filename label' lines for a challenge test zip")
    cli.add_argument("--challenge-fake-value", type=int, default=1, choices=(0, 1),
                     help="the label value that means fake in --challenge-test-labels (default 1)")
    cli = commands.add_parser("faces", help="detect and cache every image's faces once, before the first epoch",
                              description="Detect and cache every image's faces (as stored and neutrally re-encoded), "
                                          "the lookups that training, validation and evaluation make.")
    cli.add_argument("sources", nargs="+", help="folder tree, challenge zip folder or Hub dataset id")
    cli.add_argument("--face-cache", help="face box cache folder (default: the training config's face_cache)")
    cli = commands.add_parser("preview", help="write a grid of augmented samples",
                              description="Write a grid of augmented samples (un-normalised, canonical landmarks).")
    cli.add_argument("--data", required=True, help="folder tree, challenge zips or Hub dataset id")
    cli.add_argument("--output", required=True, type=Path, help="image file to write, e.g. grid.png")
    cli.add_argument("--n", type=int, default=16, help="samples in the grid (default 16)")
    cli.add_argument("--seed", type=int, default=0, help="seed of the sample draw and the augmentations (default 0)")
    cli.add_argument("--mode", choices=MODES, default="resize", help="preprocessing mode (default resize)")
    cli.add_argument("--image-size", type=int, default=160, dest="image_size",
                     help="side of each sample in pixels (default 160)")
    return parser


def cache_faces(sources: Sequence[str], face_cache: str | None) -> None:
    """Fill the face cache that training and evaluation read, and say how many images had a face."""
    from hub_utils.faces import FaceFinder
    from training.dataset import cache_faces as fill_cache  # these import torch; `describe` does not need them

    face_cache = face_cache or TrainConfig.face_cache
    counts = fill_cache(load_sources(sources), FaceFinder(face_cache))
    print(", ".join(f"{count} {what}" for what, count in sorted(counts.items())) + f"; cache: {face_cache}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "preview" and (args.n < 1 or args.image_size < 1):
        parser.error("--n and --image-size must be at least 1")
    try:
        if args.command == "faces":
            cache_faces(args.sources, args.face_cache)
        elif args.command == "preview":
            preview(args.data, args.output, n=args.n, seed=args.seed, mode=args.mode, size=args.image_size)
            print(f"wrote {args.output}")
        else:
            report = describe(args.sources, split_seed=args.split_seed,
                              challenge_test_labels=args.challenge_test_labels,
                              challenge_fake_value=args.challenge_fake_value)
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
            print(format_table(report))
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
