"""Inference speed of each default model, written to `bench/results/inference_<cpu|gpu>.json`.

    python -m bench.inference [--device cpu|cuda] [--images 64] [--threads 2] [--precision fp32|bf16]
                              [--faces DIR] [--stand-in-backbone] [--model FOLDER --model FOLDER ...]

Per model: the bare forward (preprocessed tensors already resident on the device, one view, batch 1 and 32), and end
to end through `Detector.predict` from image files (decoding, faces found on the model's device, crops, every view the
model scores), once with a fresh face cache and once with the faces cached, at batch 1 and 32. The model runs in
--precision (bf16: CUDA only; then the fp32 figures at batch 32 are recorded beside). Images: the 256 px FFHQ/StyleGAN
files of --faces (default ../shared/data/faces/zoya2244_140k_subset) when present, else generated ones. Each figure is
the best of two timed runs after a warm-up (the fresh-face run: one run, its own warm-up excluded).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hub_utils.detector import PRECISIONS, Detector, load_detector
from hub_utils.ensemble import default_sources
from hub_utils.faces import FaceFinder
from hub_utils.images import load_image
from hub_utils.model_folder import create_model, read_config

FACES_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces" / "zoya2244_140k_subset"
RESULTS = Path(__file__).resolve().parent / "results"
STAND_IN = "random stand-in of the same architecture (speed only; scores meaningless)"


def bench_images(count: int, folder: Path, faces: Path = FACES_DIR) -> list[str]:
    """`count` face files spread over `faces` when it exists (256 px FFHQ/StyleGAN), else generated 256 px images."""
    if faces.is_dir():
        files = sorted(faces.rglob("*.jpg"))
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
    """Images per second of the model alone, in the detector's precision, on resident preprocessed tensors (one
    view)."""
    @torch.inference_mode()
    def forward() -> None:
        with detector.autocast():
            for start in range(0, len(inputs), batch_size):
                detector.model(inputs[start:start + batch_size]).float().cpu()

    return len(inputs) / best_seconds(forward)


def load_bench_detector(source: str, device: str, precision: str, stand_in: bool) -> Detector:
    """The folder's detector on `device` with its own face finder there; with `stand_in`, a frozen backbone gets
    random weights of its architecture instead of being looked up (the same computation: for machines without the
    weights)."""
    finder = FaceFinder(device=device)
    config, deepfake = read_config(Path(source))
    if stand_in and not deepfake.model_kind.holds_all_weights:  # the weights it names are not looked up
        model = create_model(config, deepfake).to(device)
        return Detector(model, config, deepfake, Path(source).resolve().name, face_finder=finder, precision=precision)
    return load_detector(source, finder, device=device, precision=precision)


def with_finder(detector: Detector, face_finder: FaceFinder, precision: str) -> Detector:
    """The same model with another face finder and precision."""
    return Detector(detector.model, detector.config, detector.deepfake, detector.name, face_finder=face_finder,
                    precision=precision)


def measure(source: str, paths: list[str], device: str, precision: str = "fp32", stand_in: bool = False) -> dict:
    """The figures of one model on `paths`."""
    detector = load_bench_detector(source, device, precision, stand_in)
    regions = [regions[0][0] for regions in detector.regions_of_many([load_image(path) for path in paths])]
    inputs = torch.cat([detector.preprocess(region) for region in regions])
    inputs = inputs.to(device).contiguous(memory_format=torch.channels_last)
    fresh_finder = FaceFinder(device=device)
    fresh_finder.find(load_image(paths[0]))  # MTCNN's weights load outside the timed run
    if device == "cuda":  # and CUDA's one-time set-up of the model's kernels
        detector.score_regions(regions[:32])
    fresh = with_finder(detector, fresh_finder, precision)
    started = time.perf_counter()
    fresh.predict(paths, batch_size=32)
    fresh_rate = len(paths) / (time.perf_counter() - started)
    cached = {size: len(paths) / best_seconds(partial(detector.predict, paths, batch_size=size)) for size in (1, 32)}
    bare = {size: bare_forward_rate(detector, inputs, size) for size in (1, 32)}
    entry = {"device": device, "model": detector.name, "images": len(paths), "threads": torch.get_num_threads(),
             "precision": precision, "face_device": str(detector.face_finder.device),
             "views_per_face": 2 if detector.deepfake.test_time_flip else 1,
             "end_to_end_fresh_img_s": round(fresh_rate, 2), "end_to_end_cached_img_s": round(cached[32], 2),
             "bare_forward_img_s": round(bare[32], 2), "batch_1_end_to_end_cached_img_s": round(cached[1], 2),
             "batch_1_bare_forward_img_s": round(bare[1], 2), "batch_1_ms_per_face": round(1000 / cached[1], 1)}
    if precision != "fp32":
        fp32 = with_finder(detector, detector.face_finder, "fp32")
        entry |= {"bare_forward_fp32_img_s": round(bare_forward_rate(fp32, inputs, 32), 2),
                  "end_to_end_cached_fp32_img_s": round(
                      len(paths) / best_seconds(partial(fp32.predict, paths, batch_size=32)), 2)}
    if stand_in and not detector.deepfake.model_kind.holds_all_weights:
        entry["backbone_weights"] = STAND_IN
    return entry


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.inference", description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="append", help="model folder; repeat for several (default: the defaults)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                        help="where the models run and faces are found (default cpu)")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS,
                        help="the models' forward: fp32 (default) or bf16 autocast (CUDA only)")
    parser.add_argument("--images", type=int, default=64, help="256 px face images to score (default 64)")
    parser.add_argument("--faces", type=Path, default=FACES_DIR,
                        help="folder of .jpg face files to take them from (default ../shared/data/faces/"
                             "zoya2244_140k_subset; generated images when it does not exist)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--stand-in-backbone", action="store_true",
                        help="a frozen backbone (the CLIP model's) runs with random weights of its architecture: the "
                             "same speed, meaningless scores, for a machine without its weights; recorded per entry")
    parser.add_argument("--output", type=Path, help="default: bench/results/inference_<cpu|gpu>.json")
    args = parser.parse_args(argv)
    if args.images < 1 or args.threads < 1:
        parser.error("--images and --threads must be at least 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here")
    if args.precision == "bf16" and args.device != "cuda":
        parser.error("--precision bf16 runs on CUDA only")
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        paths = bench_images(args.images, Path(tmp), args.faces)
        entries = [measure(source, paths, args.device, args.precision, args.stand_in_backbone)
                   for source in args.model or default_sources()]
    context = {"date": datetime.date.today().isoformat(), "torch": torch.__version__,
               "processor": platform.processor() or platform.machine(), "cpu_cores": os.cpu_count(),
               "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None}
    entries = [{**entry, **context} for entry in entries]
    output = args.output or RESULTS / f"inference_{'gpu' if args.device == 'cuda' else 'cpu'}.json"
    output.write_text(json.dumps(entries, indent=2) + "\n")
    for entry in entries:
        print(json.dumps(entry))


if __name__ == "__main__":
    main()
