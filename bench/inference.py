"""Inference speed of each default model, written to `bench/results/inference_<cpu|gpu>.json`.

    python -m bench.inference [--device cpu] [--images 64] [--threads 2] [--model FOLDER --model FOLDER ...]

Per model: the bare forward (preprocessed tensors already resident, one view, batch 1 and 32), and end to end through
`Detector.predict` from image files (decoding, faces, crops, every view the model scores), once with a fresh face
cache and once with the faces cached, at batch 1 and 32. Images: 256 px FFHQ/StyleGAN files of ../shared/data/faces
when present, else generated ones. Each figure is the best of two timed runs after a warm-up (the fresh-face run:
one run, its own warm-up excluded).
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hub_utils.detector import Detector, load_detector
from hub_utils.ensemble import default_sources
from hub_utils.faces import FaceFinder
from hub_utils.images import load_image

FACES_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"
RESULTS = Path(__file__).resolve().parent / "results"


def bench_images(count: int, folder: Path) -> list[str]:
    """Real face files when ../shared/data/faces exists (256 px FFHQ/StyleGAN), else generated 256 px images."""
    if FACES_DIR.is_dir():
        files = sorted((FACES_DIR / "zoya2244_140k_subset").rglob("*.jpg"))
        return [str(p) for p in files[:: max(1, len(files) // count)][:count]]
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        path = folder / f"{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def best_seconds(function: Callable[[], object], repeats: int = 2) -> float:
    """Best wall time of `repeats` runs after one warm-up."""
    function()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return best


def bare_forward_rate(detector: Detector, inputs: torch.Tensor, batch_size: int) -> float:
    """Images per second of the model alone on resident, preprocessed tensors (one view)."""
    device = next(detector.model.parameters()).device

    @torch.inference_mode()
    def forward() -> None:
        for start in range(0, len(inputs), batch_size):
            detector.model(inputs[start:start + batch_size].to(device)).float().cpu()

    return len(inputs) / best_seconds(forward)


def measure(source: str, paths: list[str], device: str) -> dict:
    """The figures of one model on `paths`."""
    detector = load_detector(source, face_finder=FaceFinder())
    detector.model.to(device)
    regions = [detector.regions(load_image(path))[0][0] for path in paths]
    inputs = torch.cat([detector.preprocess(region) for region in regions])
    fresh_finder = FaceFinder()
    fresh_finder.find(load_image(paths[0]))  # MTCNN's weights load outside the timed run
    fresh = Detector(detector.model, detector.config, detector.deepfake, detector.name, face_finder=fresh_finder)
    started = time.perf_counter()
    fresh.predict(paths, batch_size=32)
    fresh_rate = len(paths) / (time.perf_counter() - started)
    cached = {size: len(paths) / best_seconds(partial(detector.predict, paths, batch_size=size)) for size in (1, 32)}
    bare = {size: bare_forward_rate(detector, inputs, size) for size in (1, 32)}
    return {"device": device, "model": detector.name, "images": len(paths), "threads": torch.get_num_threads(),
            "views_per_face": 2 if detector.deepfake.test_time_flip else 1,
            "end_to_end_fresh_img_s": round(fresh_rate, 2), "end_to_end_cached_img_s": round(cached[32], 2),
            "bare_forward_img_s": round(bare[32], 2), "batch_1_end_to_end_cached_img_s": round(cached[1], 2),
            "batch_1_bare_forward_img_s": round(bare[1], 2), "batch_1_ms_per_face": round(1000 / cached[1], 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.inference", description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="append", help="model folder; repeat for several (default: the defaults)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where the models run (default cpu)")
    parser.add_argument("--images", type=int, default=64, help="256 px face images to score (default 64)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--output", type=Path, help="default: bench/results/inference_<cpu|gpu>.json")
    args = parser.parse_args(argv)
    if args.images < 1 or args.threads < 1:
        parser.error("--images and --threads must be at least 1")
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        paths = bench_images(args.images, Path(tmp))
        entries = [measure(source, paths, args.device) for source in args.model or default_sources()]
    context = {"date": datetime.date.today().isoformat(), "torch": torch.__version__,
               "processor": platform.processor() or platform.machine(),
               "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None}
    entries = [{**entry, **context} for entry in entries]
    output = args.output or RESULTS / f"inference_{'gpu' if args.device == 'cuda' else 'cpu'}.json"
    output.write_text(json.dumps(entries, indent=2) + "\n")
    for entry in entries:
        print(json.dumps(entry))


if __name__ == "__main__":
    main()
