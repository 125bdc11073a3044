"""Augmentation throughput, and whether a DataLoader keeps an EfficientNet-Lite0 training step fed on 2 cores.

    python -m bench.augment            # from the repository root; about 2 minutes
    python -m bench.augment --data ../shared/data/faces --steps 5 --image-size 160

Uses ../shared/data/faces when present, else generated 256 px images. Step times compare forward+backward on
synthetic tensors (the ceiling) with the same step fed by a DataLoader that decodes and augments real images;
a setting is "fed" when the step waits less than 5% of its time for the next batch.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path

import datasets
import numpy as np
import timm
import torch
from PIL import Image

from training.augment import AugmentConfig, TrainTransform, build_train_transform
from training.data import load_source

DEFAULT_DATA = Path("..") / "shared" / "data" / "faces"
MEAN = STD = (0.5, 0.5, 0.5)


class AugmentedImages(torch.utils.data.Dataset):
    """(tensor, label) from a `datasets` image dataset through a training transform."""

    def __init__(self, ds: datasets.Dataset, transform: TrainTransform):
        self.ds, self.transform = ds, transform

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        row = self.ds[index]
        return self.transform(np.asarray(row["image"].convert("RGB"))), row["label"]


def generated_dataset(count: int, size: int = 256) -> datasets.Dataset:
    """Smooth random RGB images with alternating labels, for machines without the faces folder."""
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize((size, size), Image.BICUBIC)
              for _ in range(count)]
    return datasets.Dataset.from_dict({"image": images, "label": [i % 2 for i in range(count)]},
                                      features=datasets.Features({"image": datasets.Image(),
                                                                  "label": datasets.Value("int64")}))


def load_bench_data(data: Path, count: int, seed: int) -> tuple[datasets.Dataset, str]:
    if data.is_dir():
        ds = load_source(str(data))
        return ds.shuffle(seed=seed).select(range(min(count, len(ds)))), str(data)
    return generated_dataset(count), "generated 256 px images"


def augment_rate(ds: datasets.Dataset, transform: TrainTransform, count: int) -> tuple[float, float]:
    """(images/s of the transform alone on decoded arrays, images/s of decode + transform)."""
    arrays = [np.asarray(ds[i]["image"].convert("RGB")) for i in range(count)]
    start = time.perf_counter()
    for array in arrays:
        transform(array)
    alone = count / (time.perf_counter() - start)
    start = time.perf_counter()
    for i in range(count):
        transform(np.asarray(ds[i]["image"].convert("RGB")))
    return alone, count / (time.perf_counter() - start)


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)


def step_times(model: torch.nn.Module, batches, steps: int) -> tuple[float, float]:
    """Mean (seconds per step, of which waiting for the batch) over `steps` steps after one warm-up step."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    iterator = iter(batches)
    totals, waits = [], []
    for step in range(steps + 1):
        start = time.perf_counter()
        images, labels = next(iterator)
        loaded = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(images.to(memory_format=torch.channels_last)), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step:
            totals.append(time.perf_counter() - start)
            waits.append(loaded - start)
    return float(np.mean(totals)), float(np.mean(waits))


def synthetic_batches(batch: int, size: int):
    while True:
        yield torch.randn(batch, 3, size, size), torch.randint(0, 2, (batch,))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.augment", description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="a folder tree of faces (default ../shared/data/faces; generated images without it)")
    parser.add_argument("--image-size", type=int, default=160, dest="image_size",
                        help="model input side in pixels (default 160)")
    parser.add_argument("--batch-size", type=int, default=32, dest="batch_size",
                        help="images per training step (default 32)")
    parser.add_argument("--steps", type=int, default=4, help="timed training steps per setting")
    parser.add_argument("--images", type=int, default=200, help="images for the augmentation rate")
    args = parser.parse_args(argv)
    if min(args.image_size, args.batch_size, args.steps, args.images) < 1:
        parser.error("--image-size, --batch-size, --steps and --images must be at least 1")
    torch.set_num_threads(2)
    torch.manual_seed(0)
    datasets.disable_progress_bars()
    ds, origin = load_bench_data(args.data, max(args.images, args.batch_size * (args.steps + 2)), seed=0)
    print(f"python {platform.python_version()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"data: {origin}, {args.image_size} px, batch {args.batch_size}")
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start (other jobs slow every number)")
    for mode in ("resize", "crop"):
        transform = build_train_transform(AugmentConfig(mode=mode), args.image_size, MEAN, STD, seed=0)
        alone, with_decode = augment_rate(ds, transform, args.images)
        print(f"augment ({mode}, default config): {alone:7.1f} img/s on decoded arrays, "
              f"{with_decode:7.1f} img/s with decoding")
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=2)
    model = model.to(memory_format=torch.channels_last).train()
    transform = build_train_transform(AugmentConfig(), args.image_size, MEAN, STD, seed=0)
    print("train step (forward+backward+AdamW); synthetic tensors measured just before each loader setting")
    for workers in (0, 1, 2):
        ceiling, _ = step_times(model, synthetic_batches(args.batch_size, args.image_size), args.steps)
        loader = torch.utils.data.DataLoader(AugmentedImages(ds, transform), batch_size=args.batch_size, shuffle=True,
                                             num_workers=workers, worker_init_fn=_one_thread if workers else None)
        seconds, wait = step_times(model, loader, args.steps)
        share = wait / seconds
        verdict = "fed" if share < 0.05 else f"waits {100 * share:.0f}% of the step for data"
        print(f"  num_workers={workers}: synthetic {ceiling:5.2f} s/step, real {seconds:5.2f} s/step "
              f"({args.batch_size / seconds:4.1f} img/s, {wait:4.2f} s waiting for data): {verdict}")

if __name__ == "__main__":
    main()
