"""Score face images from the command line: one row per image, face and model.

    python -m hub_utils.detect photos/ face.jpg --output results.csv
    python -m hub_utils.detect photos/ --model owner/name@main --model models/other --ensemble --output out.json
    accelerate launch -m hub_utils.detect photos/ --output results.csv    # split across processes / GPUs

One row per image, face and model, the headline model's rows first (`headline` true: the model whose verdict leads,
`models/defaults.json`'s headline or the first --model); `inconclusive` is true within 0.1 of the model's threshold.
Exit status 0 when it ran (unreadable images are rows with an `error`), 2 on usage errors.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .detector import ImageScore, is_inconclusive
from .ensemble import ENSEMBLE_NAME, Ensemble, default_headline, default_sources, load_ensemble
from .images import IMAGE_SUFFIXES
from .model_folder import ModelFolderError

COLUMNS = ("path", "face", "box", "model", "headline", "fake_probability", "threshold", "verdict", "inconclusive",
           "error")


def expand_paths(paths: Iterable[str]) -> list[str]:
    """Files as given, folders recursed for image files (sorted)."""
    found: list[str] = []
    for path in map(Path, paths):
        if path.is_dir():
            found.extend(str(p) for p in sorted(path.rglob("*")) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            found.append(str(path))
    return found


def prepare_output(output: str) -> None:
    """Create the output's folder before any scoring, so a bad --output fails at once, not after the last image."""
    folder = Path(output).resolve().parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OSError(f"cannot create the folder for --output {output} ({error.strerror}).") from None
    if not os.access(folder, os.W_OK):
        raise OSError(f"cannot write --output {output}: {folder} is not writable.")


def rows_for(path: str, model: str, score: ImageScore, threshold: float, headline: bool) -> list[dict[str, Any]]:
    """CSV/JSON rows of one image scored by one model (`headline`: the model whose verdict leads)."""
    common = {"path": path, "model": model, "headline": headline, "threshold": round(threshold, 6)}
    if score.error:
        return [{**common, "face": "", "box": "", "fake_probability": "", "verdict": "", "inconclusive": "",
                 "error": score.error}]
    return [{**common, "face": "none" if face.face is None else face.face, "box": ",".join(map(str, face.box)),
             "fake_probability": round(face.fake_probability, 6), "verdict": face.verdict,
             "inconclusive": is_inconclusive(face.fake_probability, threshold), "error": ""}
            for face in score.faces]


def score_paths(ensemble: Ensemble, paths: Sequence[str], batch_size: int, face_crop: bool | None,
                with_ensemble: bool, headline: str, show_progress: bool = True) -> list[dict[str, Any]]:
    """Rows for every path and every model (and the ensemble if asked), the headline's rows first."""
    thresholds = {d.name: d.threshold for d in ensemble.detectors} | {ENSEMBLE_NAME: ensemble.threshold}
    rows: list[dict[str, Any]] = []
    for start in tqdm(range(0, len(paths), batch_size), desc="detect", unit="batch", file=sys.stderr,
                      disable=not show_progress):
        chunk = paths[start:start + batch_size]
        for path, result in zip(chunk, ensemble.predict(chunk, chunk, batch_size=batch_size, face_crop=face_crop)):
            scores = [*result.members.items(), *([(ENSEMBLE_NAME, result.ensemble)] if with_ensemble else [])]
            for model, score in sorted(scores, key=lambda item: item[0] != headline):
                rows.extend(rows_for(path, model, score, thresholds[model], model == headline))
    return rows


def write_rows(rows: list[dict[str, Any]], output: str | None) -> None:
    """CSV (default, or .csv) or JSON (.json) to a file, or CSV to stdout."""
    if output and output.endswith(".json"):
        Path(output).write_text(json.dumps(rows, indent=2) + "\n")
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    if output:
        Path(output).write_text(buffer.getvalue())
    else:
        sys.stdout.write(buffer.getvalue())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hub_utils.detect",
                                     description="Real or GAN-made? Score face images.")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders (recursed)")
    parser.add_argument("--model", action="append", help="model folder or Hub id[@revision]; repeat for several, the "
                                                         "first one leads (default: the embedded models named in "
                                                         "models/defaults.json, led by its headline)")
    parser.add_argument("--output", help="FILE.csv or FILE.json (default: CSV on stdout)")
    parser.add_argument("--no-face-crop", action="store_true", help="score whole images, no face detection")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--ensemble", action="store_true", help="also rows for the ensemble (mean of the models)")
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
    try:
        if args.output:
            prepare_output(args.output)
        ensemble = load_ensemble(sources)
    except (ModelFolderError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for detector in ensemble.detectors:
        if not detector.deepfake.trained:
            print(f"warning: {detector.name} is an UNTRAINED placeholder; its scores mean nothing.", file=sys.stderr)
    from accelerate import PartialState
    from accelerate.utils import gather_object

    state = PartialState()
    for detector in ensemble.detectors:
        detector.model.to(state.device)
    headline = headline or ensemble.detectors[0].name
    with state.split_between_processes(paths) as mine:
        rows = score_paths(ensemble, mine, args.batch_size, False if args.no_face_crop else None,
                           args.ensemble or headline == ENSEMBLE_NAME, headline, show_progress=state.is_main_process)
    if state.num_processes > 1:
        rows = gather_object(rows)
    if state.is_main_process:
        write_rows(rows, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
