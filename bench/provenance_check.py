"""Provenance on every image of ../shared/data/faces: claims per source and label, every generated or edited claim on
a real photo (target 0), the watermark's margin, and the latency of `read_provenance` against decoding the same bytes.

    python -m bench.provenance_check [--faces DIR] [--output bench/results/provenance_check.txt]
    python -m bench.provenance_check --model models/clip-vitb16-probe --library-check 400

The margin decodes the watermark on every photo of at least 256x256 pixels with no format or size gate (as if every
file were a lossless original) and reports the most bits any photo matched. `--model` also times `Detector.predict`
on a few files, the cost provenance is compared with (target: within 5%). `--library-check N` compares the
vectorised decoder with invisible-watermark's own, bit for bit, on N photos (needs `imwatermark` importable).
"""
from __future__ import annotations

import argparse
import csv
import io
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from hub_utils.provenance import (
    WATERMARK_MATCH,
    WATERMARK_MIN_PIXELS,
    WATERMARKS,
    read_provenance,
    watermark_bits,
    watermark_matches,
)

FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"


def timed(function: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return 1000 * (time.perf_counter() - started), result


def decode(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def percentiles(values: list[float]) -> str:
    ordered = sorted(values)
    return (f"median {statistics.median(ordered):.2f} ms, p95 {ordered[int(0.95 * (len(ordered) - 1))]:.2f} ms, "
            f"max {ordered[-1]:.2f} ms")


def survey(faces: Path, rows: list[dict[str, str]]) -> tuple[list[str], dict[str, list[float]]]:
    """Claims per source and label, false claims, watermark margin; the per-file timings by format."""
    claims: dict[tuple[str, str], Counter] = defaultdict(Counter)
    false_claims: list[str] = []
    margin: dict[tuple[str, str], int] = defaultdict(int)
    decodable = Counter()
    timings: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        data = (faces / row["relpath"]).read_bytes()
        decode_ms, image = timed(decode, data)
        provenance_ms, provenance = timed(read_provenance, data)
        with_pixels_ms, _ = timed(read_provenance, data, image)
        file_format = Image.open(io.BytesIO(data)).format
        timings[f"decode {file_format}"].append(decode_ms)
        timings[f"read_provenance {file_format}"].append(provenance_ms)
        timings[f"read_provenance with pixels {file_format}"].append(with_pixels_ms)
        source, label = row["relpath"].split("/")[0], row["label"]
        claims[source, label].update(f"{f.mechanism}:{f.claim}" for f in provenance.findings)
        claims[source, label]["files"] += 1
        if label == "real" and provenance.claim in ("generated", "edited"):
            false_claims.append(f"{row['relpath']}: {provenance.sentence}")
        if image.width * image.height >= WATERMARK_MIN_PIXELS:
            decodable[label] += 1
            for tool, matched in watermark_matches(np.asarray(image)).items():
                margin[label, tool] = max(margin[label, tool], matched)
    lines = ["## Claims per source and label (mechanism:claim, files with each)", ""]
    lines += [f"{source} / {label}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
              for (source, label), counts in sorted(claims.items())]
    totals = Counter()
    for (_, label), counts in claims.items():
        totals.update({f"{label} {k}": v for k, v in counts.items()})
    lines += ["", "## Totals", ""] + [f"{key}: {value}" for key, value in sorted(totals.items())]
    lines += ["", f"## Generated or edited claims on real photos: {len(false_claims)} (target 0)", ""] + false_claims
    lines += ["", "## Watermark margin: most bits matched by any file, no gate (detection threshold "
              f"{WATERMARK_MATCH:.3f} of the bits)", ""]
    lines += [f"{label}, {decodable[label]} files of >= 256x256 px: " + ", ".join(
        f"{tool} {margin[label, tool]}/{len(bits)} (threshold {int(np.ceil(WATERMARK_MATCH * len(bits)))})"
        for tool, bits in WATERMARKS.items()) for label in sorted(decodable)]
    return lines, timings


def lossless_photo() -> bytes:
    """The reader's costliest kind of file: a 1024x1024 PNG (SDXL's native size), so the watermark is decoded."""
    from skimage import data as skimage_data

    buffer = io.BytesIO()
    Image.fromarray(skimage_data.astronaut()).resize((1024, 1024)).save(buffer, "PNG")
    return buffer.getvalue()


def worst_case() -> list[str]:
    """`lossless_photo` decoded by the reader, or handed to it decoded, against decoding it."""
    data = lossless_photo()
    runs = [(timed(decode, data), timed(read_provenance, data)) for _ in range(10)]
    image = runs[0][0][1]
    with_pixels = [timed(read_provenance, data, image)[0] for _ in range(10)]
    return ["", "## Worst case: 1024x1024 PNG (the watermark is decoded), median of 10", "",
            f"decode {statistics.median(r[0][0] for r in runs):.1f} ms, read_provenance "
            f"{statistics.median(r[1][0] for r in runs):.1f} ms, read_provenance with the decoded pixels "
            f"{statistics.median(with_pixels):.1f} ms"]


def scoring_cost(model: str, faces: Path, rows: list[dict[str, str]], count: int) -> list[str]:
    """`Detector.predict` one file at a time against `read_provenance` on the same bytes."""
    from hub_utils.detector import load_detector

    detector = load_detector(model)
    paths = [faces / row["relpath"] for row in rows[:: max(1, len(rows) // count)][:count]]
    detector.predict([paths[0]])  # warm-up
    predict_ms = [timed(detector.predict, [path], batch_size=1)[0] for path in paths]
    provenance_ms = [timed(read_provenance, path.read_bytes())[0] for path in paths]
    ratios = [100 * p / s for p, s in zip(provenance_ms, predict_ms)]
    data = lossless_photo()
    decoded = decode(data)
    worst = [(timed(detector.predict, [data], batch_size=1)[0], timed(read_provenance, data)[0],
              timed(read_provenance, data, decoded)[0]) for _ in range(5)]
    predict, alone, with_pixels = (statistics.median(column) for column in zip(*worst))
    return ["", f"## Scoring cost: {Path(model).name}, {len(paths)} files, one at a time, faces not cached", "",
            f"Detector.predict {percentiles(predict_ms)}", f"read_provenance {percentiles(provenance_ms)}",
            f"read_provenance / predict of the same file: median {statistics.median(ratios):.3g}%, "
            f"max {max(ratios):.3g}% (target <= 5%)",
            f"1024x1024 PNG, median of 5 in alternation: predict {predict:.0f} ms, read_provenance {alone:.1f} ms "
            f"({100 * alone / predict:.2g}%), with the decoded pixels {with_pixels:.1f} ms "
            f"({100 * with_pixels / predict:.2g}%)"]


def library_check(faces: Path, rows: list[dict[str, str]], count: int) -> list[str]:
    """The vectorised decoder against invisible-watermark's on `count` files of >= 256x256 px spread over the
    folder, both message lengths."""
    from imwatermark import WatermarkDecoder

    paths = [faces / row["relpath"] for row in rows]
    eligible = [path for path in paths if np.prod(Image.open(path).size) >= WATERMARK_MIN_PIXELS]
    compared = mismatched = 0
    for path in eligible[:: max(1, len(eligible) // count)][:count]:
        bgr = np.ascontiguousarray(np.asarray(Image.open(path).convert("RGB"))[:, :, ::-1])
        for length in (len(bits) for bits in WATERMARKS.values()):
            reference = np.asarray(WatermarkDecoder("bits", length).decode(bgr, "dwtDct"), bool)
            mismatched += not np.array_equal(reference, watermark_bits(bgr, length))
            compared += 1
    return ["", f"## Vectorised decoder vs invisible-watermark 0.2.0: {compared} decodes "
                f"({compared // 2} files x 2 lengths), {mismatched} differ"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.provenance_check", description=__doc__.split("\n")[0])
    parser.add_argument("--faces", type=Path, default=FACES, help="the face folder to read (default: %(default)s)")
    parser.add_argument("--output", type=Path, default=Path("bench/results/provenance_check.txt"),
                        help="where the report goes (default: %(default)s)")
    parser.add_argument("--model", help="also time Detector.predict of this model folder")
    parser.add_argument("--scoring-images", type=int, default=24,
                        help="files timed with --model's Detector.predict (default: %(default)s)")
    parser.add_argument("--library-check", type=int, default=0, metavar="N",
                        help="also compare the watermark decoder with invisible-watermark's on N files (default: 0)")
    args = parser.parse_args(argv)
    if not (args.faces / "MANIFEST.tsv").is_file():
        parser.error(f"no MANIFEST.tsv in {args.faces}: pass --faces (see ../shared/data/README.md)")
    rows = list(csv.DictReader((args.faces / "MANIFEST.tsv").open(), delimiter="\t"))
    lines, timings = survey(args.faces, rows)
    lines = [f"bench/provenance_check.py, {datetime.now():%Y-%m-%d %H:%M}: {len(rows)} files of {args.faces.name}",
             ""] + lines
    lines += ["", "## Latency per file (this machine, one thread of Python)", ""]
    lines += [f"{name} ({len(values)} files): {percentiles(values)}" for name, values in sorted(timings.items())]
    everything = [v for name, values in timings.items() if name.startswith("read_provenance ") and "pixels" not in name
                  for v in values]
    lines.append(f"read_provenance, all files: {percentiles(everything)}")
    lines += worst_case()
    if args.model:
        lines += scoring_cost(args.model, args.faces, rows, args.scoring_images)
    if args.library_check:
        lines += library_check(args.faces, rows, args.library_check)
    text = "\n".join(lines) + "\n"
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)


if __name__ == "__main__":
    main()
