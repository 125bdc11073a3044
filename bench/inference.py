"""Inference throughput: the CLI's path (`Detector.predict` on files) against a bare timm forward of the same
weights on the same files, at batch 1 and 32 on 2 threads, plus the throughput with face detection. The bare forward
scores one view; a model with test-time flip scores two, so expect about half the bare throughput there.

    python -m bench.inference [--model models/effnet-lite0-resize192] [--images 96] [--threads 2]
"""
from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import timm
import torch
from PIL import Image
from safetensors.torch import load_file

from hub_utils.detector import Detector, load_detector
from hub_utils.ensemble import default_sources
from hub_utils.faces import FaceFinder
from hub_utils.model_folder import change_architecture

FACES_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"


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


def timed(function, repeats: int = 2) -> float:
    """Best wall time of `repeats` runs after one warm-up."""
    function()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return best


def bare_forward(model: torch.nn.Module, transform, paths: list[str], batch_size: int) -> None:
    with torch.inference_mode():
        for start in range(0, len(paths), batch_size):
            batch = torch.stack([transform(Image.open(p).convert("RGB")) for p in paths[start:start + batch_size]])
            model(batch.contiguous(memory_format=torch.channels_last)).softmax(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=(default_sources() or [None])[0])
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        paths = bench_images(args.images, Path(tmp))
        detector = load_detector(args.model, face_finder=FaceFinder())
        kept_blocks = detector.deepfake.kept_blocks  # the model card's steps for bare timm
        model = timm.create_model(f"local-dir:{args.model}", pretrained=not kept_blocks).eval()
        change_architecture(model, detector.deepfake)
        if kept_blocks:
            model.load_state_dict(load_file(Path(args.model) / "model.safetensors"))
        model = model.to(memory_format=torch.channels_last)
        transform = timm.data.create_transform(**timm.data.resolve_data_config(model=model))
        flip = ", test-time flip: 2 forward passes per face" if detector.deepfake.test_time_flip else ""
        print(f"model {args.model} ({detector.deepfake.preprocessing}, {detector.config['pretrained_cfg']['input_size'][-1]} px{flip}); "
              f"{len(paths)} images; {args.threads} threads; torch {torch.__version__}; {platform.processor() or platform.machine()}")
        print(f"{'batch':>5} {'bare timm img/s':>16} {'predict img/s':>14} {'ratio':>6}")
        for batch_size in (1, 32):
            bare = len(paths) / timed(lambda: bare_forward(model, transform, paths, batch_size))
            ours = len(paths) / timed(lambda: detector.predict(paths, batch_size=batch_size, face_crop=False))
            print(f"{batch_size:>5} {bare:>16.1f} {ours:>14.1f} {ours / bare:>6.2f}")
        fresh = lambda: Detector(detector.model, detector.config, detector.deepfake, detector.name,  # noqa: E731
                                 face_finder=FaceFinder())
        cold = len(paths) / timed(lambda: fresh().predict(paths, batch_size=32), repeats=1)
        warm = len(paths) / timed(lambda: detector.predict(paths, batch_size=32))
        print(f"with face detection, batch 32: {cold:.1f} img/s with a fresh face cache, {warm:.1f} img/s cached")


if __name__ == "__main__":
    main()
