"""Is a change slower? `Detector.predict` of two checkouts, timed in alternation on this machine.

    git worktree add ../before <commit>
    python -m bench.speed_ab ../before . [--rounds 3] [--models NAME ...] [--output bench/results/speed_ab.txt]

Each round runs each checkout's own code and model folders in a fresh process, one after the other, so drift of a
shared machine hits both alike. Per default model: the median time of one image at batch 1 and the rate of 64 images
at batch 32, faces cached (the face finder is the same code in both unless the change touched it), on 64 files spread
over `--faces` (the files `bench.inference` takes). The table gives each checkout's median over the rounds and every
round's figure.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

MODELS = {"effnet-lite2-resize224-soup": 40, "clip-vitb16-probe": 12}  # model folder -> batch-1 repetitions
IMAGES = 64
FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces" / "zoya2244_140k_subset"


def face_files(faces: Path) -> list[str]:
    """IMAGES .jpg files spread over `faces`."""
    files = sorted(faces.rglob("*.jpg"))
    return [str(p) for p in files[:: max(1, len(files) // IMAGES)][:IMAGES]]


def measure(checkout: Path, paths: list[str], models: list[str]) -> dict[str, dict[str, float]]:
    """This process's figures for `checkout` (its code first on sys.path): {model: {batch1_ms, batch32_img_s}}."""
    sys.path.insert(0, str(checkout))
    import torch

    from hub_utils.detector import load_detector

    torch.set_num_threads(2)
    figures = {}
    for model in models:
        repetitions = MODELS[model]
        detector = load_detector(checkout / "models" / model)
        detector.predict(paths, batch_size=32)  # warm-up; caches the faces
        single = []
        for i in range(repetitions):
            started = time.perf_counter()
            detector.predict([paths[i % len(paths)]], batch_size=1)
            single.append(time.perf_counter() - started)
        whole = []
        for _ in range(3):
            started = time.perf_counter()
            detector.predict(paths, batch_size=32)
            whole.append(time.perf_counter() - started)
        figures[model] = {"batch1_ms": round(1000 * statistics.median(single), 1),
                          "batch32_img_s": round(len(paths) / statistics.median(whole), 2)}
    return figures


def label(checkout: Path) -> str:
    """The checkout's commit, and its folder."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=checkout, capture_output=True, text=True)
    return f"{commit.stdout.strip() or '?'} ({checkout.name})"


def table(checkouts: list[Path], models: list[str], rounds: list[dict[str, dict]]) -> str:
    """Per model and checkout: the median over rounds of each figure, then every round's figure."""
    lines = ["| model | checkout | batch 1, ms per image (median; rounds) | batch 32, images/s (median; rounds) |",
             "|---|---|---|---|"]
    for model in models:
        for checkout in checkouts:
            cells = []
            for key in ("batch1_ms", "batch32_img_s"):
                values = [r[str(checkout)][model][key] for r in rounds]
                cells.append(f"{statistics.median(values):g} ({', '.join(f'{v:g}' for v in values)})")
            lines.append(f"| {model} | {label(checkout)} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.speed_ab", description=__doc__.split("\n")[0])
    parser.add_argument("before", type=Path, nargs="?", help="a checkout of the code before the change")
    parser.add_argument("after", type=Path, nargs="?", help="a checkout with the change")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the two checkouts (default 3)")
    parser.add_argument("--faces", type=Path, default=FACES,
                        help="folder of .jpg face files (default ../shared/data/faces/zoya2244_140k_subset)")
    parser.add_argument("--models", nargs="+", choices=tuple(MODELS), default=list(MODELS),
                        help="the default model folders to time (default: both)")
    parser.add_argument("--output", type=Path, help="also write the table here")
    parser.add_argument("--measure", type=Path, metavar="CHECKOUT",
                        help="measure one checkout in this process on the files named on stdin (a JSON list) and "
                             "print its figures as JSON: what each round runs in a fresh process")
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure.resolve(), json.loads(sys.stdin.read()), args.models)))
        return 0
    if args.before is None or args.after is None:
        parser.error("give two checkouts: BEFORE AFTER")
    checkouts = [args.before.resolve(), args.after.resolve()]
    for checkout in checkouts:
        if not (checkout / "hub_utils" / "detector.py").is_file():
            parser.error(f"{checkout} is not a checkout of this project (no hub_utils/detector.py): make one with "
                         "`git worktree add ../before COMMIT`")
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    paths = face_files(args.faces) if args.faces.is_dir() else []
    if not paths:
        parser.error(f"no .jpg face files in {args.faces}: give a folder of faces with --faces")
    rounds = []
    for _ in range(args.rounds):
        rounds.append({str(checkout): json.loads(subprocess.run(
            [sys.executable, __file__, "--measure", str(checkout), "--models", *args.models], input=json.dumps(paths),
            cwd=checkout, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
            for checkout in checkouts})
    lines = [f"bench/speed_ab.py, {time.strftime('%Y-%m-%d %H:%M')}: {args.rounds} rounds, "
             f"{len(paths)} images of {args.faces.name}, faces cached, 2 threads",
             table(checkouts, args.models, rounds)]
    text = "\n\n".join(lines)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
