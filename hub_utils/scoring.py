"""Score image files for the command line: rows per image, face and model, written as CSV or JSON.

`hub_utils.detect` (the CLI) expands folders into image files, checks the output's folder before any scoring (as
`training.evaluate` does too), scores the files through `Ensemble.predict` and writes the rows, each with the file's
provenance columns beside its score (never part of it; the evaluation's metrics never read them).
"""
from __future__ import annotations

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
from .ensemble import ENSEMBLE_NAME, Ensemble
from .images import IMAGE_SUFFIXES
from .provenance import PROVENANCE_COLUMNS, read_provenance

COLUMNS = ("path", "face", "box", "model", "headline", "fake_probability", "threshold", "verdict", "inconclusive",
           "error", *PROVENANCE_COLUMNS)


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


def file_provenance(path: str) -> dict[str, str]:
    """The provenance columns of a file, read from its bytes as stored; empty for a file that cannot be read."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return dict.fromkeys(PROVENANCE_COLUMNS, "")
    return read_provenance(data).to_columns()


def rows_for(path: str, model: str, score: ImageScore, threshold: float, headline: bool,
             provenance: dict[str, str]) -> list[dict[str, Any]]:
    """CSV/JSON rows of one image scored by one model (`headline`: the model whose verdict leads), with the file's
    provenance columns beside the score."""
    common = {"path": path, "model": model, "headline": headline, "threshold": round(threshold, 6), **provenance}
    if score.error:
        return [{**common, "face": "", "box": "", "fake_probability": "", "verdict": "", "inconclusive": "",
                 "error": score.error}]
    return [{**common, "face": "none" if face.face is None else face.face + 1, "box": ",".join(map(str, face.box)),
             "fake_probability": round(face.fake_probability, 6), "verdict": face.verdict,
             "inconclusive": is_inconclusive(face.fake_probability, threshold), "error": ""}
            for face in score.faces]


def score_paths(ensemble: Ensemble, paths: Sequence[str], batch_size: int, face_crop: bool | None,
                with_ensemble: bool, headline: str, show_progress: bool = True) -> list[dict[str, Any]]:
    """Rows for every path and every model (and the ensemble if asked), the headline's rows first; the progress bar
    counts images."""
    thresholds = {d.name: d.threshold for d in ensemble.detectors} | {ENSEMBLE_NAME: ensemble.threshold}
    rows: list[dict[str, Any]] = []
    with tqdm(total=len(paths), desc="detect", unit="image", file=sys.stderr, disable=not show_progress) as progress:
        for results in ensemble.predict_chunks(paths, paths, batch_size=batch_size, face_crop=face_crop):
            for result in results:
                scores = [*result.members.items(), *([(ENSEMBLE_NAME, result.ensemble)] if with_ensemble else [])]
                provenance = file_provenance(result.ensemble.name)
                for model, score in sorted(scores, key=lambda item: item[0] != headline):
                    rows.extend(rows_for(result.ensemble.name, model, score, thresholds[model], model == headline,
                                         provenance))
            progress.update(len(results))
    return rows


def unreadable_paths(rows: Iterable[dict[str, Any]]) -> dict[str, str]:
    """{path: error} of the images that could not be scored."""
    return {row["path"]: row["error"] for row in rows if row["error"]}


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
