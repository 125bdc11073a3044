"""Score face images from the command line: one row per image, face and model.

    deepfake-detect photos/ face.jpg --output results.csv          # or: python -m hub_utils.detect ...
    deepfake-detect photos/ --model owner/name@main --model models/other --ensemble --output out.json
    deepfake-detect photos/ --device cuda --precision bf16 --batch-size 128 --output results.csv
    accelerate launch -m hub_utils.detect photos/ --output results.csv    # split across processes / GPUs

One row per image, face and model, the headline model's rows first (`headline` true: the model whose verdict leads,
`models/defaults.json`'s headline or the first --model); `inconclusive` is true within 0.1 of the model's threshold.
Faces are numbered from 1 (`none`: no face found, the whole image scored). The `provenance_*` columns say what
the file declares about its origin (`hub_utils.provenance`); they never enter P(fake). Every input that could not be
read (a missing path, a corrupt or non-image file) is a row with an `error` and a line on stderr. Exit status: 0 when
every input was scored, 1 when some could not be read (the others are still written), 2 on usage errors.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from .detector import PRECISIONS
from .ensemble import ENSEMBLE_NAME, default_headline, default_sources, load_ensemble
from .images import IMAGE_SUFFIXES
from .model_folder import ModelFolderError
from .scoring import expand_paths, prepare_output, score_paths, unreadable_paths, write_rows


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepfake-detect",
                                     description="Real or GAN-made? Score face images.")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders (recursed)")
    parser.add_argument("--model", action="append", help="model folder or Hub id[@revision]; repeat for several, the "
                                                         "first one leads (default: the embedded models named in "
                                                         "models/defaults.json, led by its headline)")
    parser.add_argument("--output", help="FILE.csv or FILE.json (default: CSV on stdout)")
    parser.add_argument("--no-face-crop", action="store_true", help="score whole images, no face detection")
    parser.add_argument("--batch-size", type=int, default=32, help="images per batch (default 32)")
    parser.add_argument("--ensemble", action="store_true", help="also rows for the ensemble (mean of the models)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where the models run and faces are found: auto (default) takes this process's GPU when "
                             "there is one (one per process under accelerate launch), else the CPU")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="fp32 (default) or bf16: the models' forward under bf16 autocast, on CUDA only; faster, "
                             "but P(fake) moves (by up to 0.07 on the default models)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    if args.output and not args.output.endswith((".csv", ".json")):
        parser.error("--output must end in .csv or .json")
    sources = args.model or default_sources()
    if not sources:
        parser.error("no --model given and no embedded models in models/")
    headline = default_headline() if not args.model else ""
    paths = expand_paths(args.paths)
    if not paths:
        print(f"error: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in {', '.join(args.paths)}.",
              file=sys.stderr)
        return 2
    from accelerate import PartialState
    from accelerate.utils import gather_object

    state = PartialState()
    device = torch.device("cpu") if args.device == "cpu" else state.device
    if args.device == "cuda" and device.type != "cuda":
        parser.error("--device cuda: this process sees no CUDA device")
    if args.precision == "bf16" and device.type != "cuda":
        parser.error(f"--precision bf16 runs on CUDA only, and the models would run on {device}; leave it at fp32")
    try:
        if args.output:
            prepare_output(args.output)
        ensemble = load_ensemble(sources, device=device, precision=args.precision)
    except (ModelFolderError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for detector in ensemble.detectors:
        if not detector.deepfake.trained:
            print(f"warning: {detector.name} is an UNTRAINED placeholder; its scores mean nothing.", file=sys.stderr)
    headline = headline or ensemble.detectors[0].name
    with state.split_between_processes(paths) as mine:
        rows = score_paths(ensemble, mine, args.batch_size, False if args.no_face_crop else None,
                           args.ensemble or headline == ENSEMBLE_NAME, headline, show_progress=state.is_main_process)
    if state.num_processes > 1:
        rows = gather_object(rows)
    if not state.is_main_process:
        return 0
    write_rows(rows, args.output)
    unreadable = unreadable_paths(rows)
    for path, error in unreadable.items():
        print(f"error: {path}: {error}", file=sys.stderr)
    if args.output:
        print(f"wrote {len(rows)} rows ({len(paths)} images) to {Path(args.output).resolve()}", file=sys.stderr)
    if unreadable:
        print(f"{len(unreadable)} of {len(paths)} inputs could not be read; their rows hold the error.",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
