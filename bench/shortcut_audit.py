"""Shortcut audit: how well does file metadata alone (width, height, format, bytes per pixel) tell real from fake?

    python -m bench.shortcut_audit --data ../shared/data/faces --output reports/shortcut_audit.json

A gradient-boosted classifier is fitted on the train split's metadata and scored on the test split, once on the
files as they are (raw) and once after the neutral re-encoding that the evaluation protocol applies. Under the
protocol it must sit at chance: otherwise size or format, not the face, would decide. Re-encoding alone leaves the
sources' processing history in the bytes per pixel (a 250 px JPEG upscaled to 256 compresses unlike a 1024 px one
downscaled), so the protocol's trusted subset is the processing-matched sources (real and fake files of one source
with the same size and format, `training.quality.processing_matched_sources`), audited the same way.
"""
from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from training.data import DataError, load_sources, raw_image_bytes
from training.perturb import NEUTRAL_QUALITY, neutral_reencode
from training.quality import drop_unusable, processing_matched_sources
from training.split import split_dataset

FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")


def metadata(data: bytes) -> list[float]:
    """[width, height, format index, bytes per pixel] of an encoded image."""
    image = Image.open(io.BytesIO(data))
    fmt = FORMATS.index(image.format) if image.format in FORMATS else len(FORMATS)
    return [image.width, image.height, fmt, len(data) / (image.width * image.height)]


def encoded_bytes(row: dict, neutral: bool) -> bytes:
    data = raw_image_bytes(row["image"])
    if not neutral:
        return data
    buffer = io.BytesIO()
    neutral_reencode(Image.open(io.BytesIO(data))).save(buffer, "JPEG", quality=NEUTRAL_QUALITY)
    return buffer.getvalue()


def features(split, neutral: bool) -> tuple[np.ndarray, np.ndarray]:
    undecoded = split.cast_column("image", split.features["image"].__class__(decode=False))
    return (np.array([metadata(encoded_bytes(row, neutral)) for row in undecoded]), np.asarray(split["label"]))


def audit(splits, neutral: bool, sources: list[str] | None = None) -> dict[str, float]:
    """Metadata classifier fitted on train, scored on test; with `sources`, on those sources' rows only."""
    if sources is not None:
        splits = {name: splits[name].filter(lambda row: row["source"] in sources) for name in ("train", "test")}
    x_train, y_train = features(splits["train"], neutral)
    x_test, y_test = features(splits["test"], neutral)
    classifier = HistGradientBoostingClassifier(class_weight="balanced", random_state=0).fit(x_train, y_train)
    scores = classifier.predict_proba(x_test)[:, 1]
    return {"balanced_accuracy": float(balanced_accuracy_score(y_test, scores >= 0.5)),
            "roc_auc": float(roc_auc_score(y_test, scores)), "n_test": int(len(y_test))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.shortcut_audit", description=__doc__.split("\n")[0])
    parser.add_argument("--data", nargs="+", default=["../shared/data/faces"],
                        help="sources, as for training (default ../shared/data/faces)")
    parser.add_argument("--split-seed", type=int, default=0, dest="split_seed",
                        help="seed of the train/validation/test split (default 0, the split the reports use)")
    parser.add_argument("--output", type=Path, default=Path("reports/shortcut_audit.json"),
                        help="JSON report to write (default reports/shortcut_audit.json)")
    args = parser.parse_args(argv)
    try:
        dataset = drop_unusable(load_sources(args.data))
    except DataError as error:
        parser.error(str(error))
    splits = split_dataset(dataset, seed=args.split_seed)
    matched = processing_matched_sources(dataset)
    result = {"raw": audit(splits, neutral=False), "neutral": audit(splits, neutral=True),
              "matched_neutral": audit(splits, neutral=True, sources=matched), "matched_sources": matched,
              "features": ["width", "height", "format", "bytes_per_pixel"], "chance": 0.5}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    for setting in ("raw", "neutral", "matched_neutral"):
        r = result[setting]
        print(f"metadata-only classifier, {setting:>15}: balanced accuracy {r['balanced_accuracy']:.3f}, "
              f"ROC-AUC {r['roc_auc']:.3f} (test n={r['n_test']}; chance 0.5)")
    print(f"processing-matched sources: {', '.join(matched)}")


if __name__ == "__main__":
    main()
