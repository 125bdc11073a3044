"""Load test of the Space's `/detect`: concurrent gradio_client clients, each sending requests one after another.

Prints failures (target 0), p50/p95 latency, the server's peak memory (VmHWM of its process) and the latency of one
request against the ensemble's own `predict` on the same image in this process (target <= 1.3x). Every request sends
a different picture (the example face with one pixel changed), so no face-detection cache helps.

    python bench/load.py                       # starts `python app.py` with the Space's configured models
    python bench/load.py --model models/a --model models/b --clients 8 --requests 50 --output bench/results/load.txt
    python bench/load.py --url http://127.0.0.1:7860/ --pid 1234   # an app that is already running

With no model configured, an untrained stand-in (tf_efficientnet_lite0 at 192 px, ImageNet weights from the pip
package) takes the place of the default model, so that the compute per request is realistic.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from space.config import load_space_config  # noqa: E402

EXAMPLE = REPO / "space" / "examples" / "astronaut.jpg"
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1",
               "GRADIO_ANALYTICS_ENABLED": "False", "NO_ALBUMENTATIONS_UPDATE": "1"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class RunningApp:
    """`python app.py` in a subprocess; its output goes to an unbounded temporary file, never a pipe that fills."""

    process: subprocess.Popen
    url: str
    log: IO[str]

    def output(self, tail: int = 3000) -> str:
        self.log.seek(0)
        return self.log.read()[-tail:]

    def wait_until_up(self, timeout: float = 180.0) -> None:
        """Return once the app answers; raise with the end of its output if it dies or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if httpx.get(self.url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"app.py did not answer on {self.url} within {timeout:.0f} s:\n{self.output()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.log.close()


def start_app(models: list[str], temp_dir: Path, wait: bool = True, settings: Path | None = None) -> RunningApp:
    """`python app.py` serving `models` on a free localhost port with its own upload folder (with `wait`: answering),
    with the `space.config` settings file `settings` if given."""
    port = free_port()
    env = {**os.environ, **OFFLINE_ENV, "DEEPFAKE_MODELS": ",".join(models), "GRADIO_SERVER_NAME": "127.0.0.1",
           "GRADIO_SERVER_PORT": str(port), "GRADIO_TEMP_DIR": str(temp_dir)}
    if settings is not None:
        env["DEEPFAKE_SETTINGS"] = str(settings)
    log = tempfile.TemporaryFile(mode="w+")
    process = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                               text=True)
    app = RunningApp(process, f"http://127.0.0.1:{port}/", log)
    if wait:
        app.wait_until_up()
    return app


def make_variants(count: int, folder: Path) -> list[Path]:
    """`count` different JPEGs of the example face (one pixel changed in each)."""
    pixels = np.asarray(Image.open(EXAMPLE).convert("RGB"))
    paths = []
    for index in range(count):
        variant = pixels.copy()
        y, x = divmod(index, pixels.shape[1])
        variant[y % pixels.shape[0], x] = 255 - variant[y % pixels.shape[0], x]
        paths.append(folder / f"face_{index:04d}.jpg")
        Image.fromarray(variant).save(paths[-1], quality=95)
    return paths


def make_stand_in_model(folder: Path) -> str:
    """An untrained model folder with the default model's architecture and input size."""
    from hub_utils.model_folder import DeepfakeConfig, save_model_folder
    from training.backbone import create_backbone

    model = create_backbone("tf_efficientnet_lite0", "packaged", 192)
    return str(save_model_folder(model, folder, DeepfakeConfig(trained=False)))


@dataclass
class Sample:
    seconds: float
    error: str | None


def run_clients(url: str, files: list[Path], clients: int, requests: int) -> list[Sample]:
    """`clients` threads, each with its own gradio_client, sending `requests` files one after another."""
    from gradio_client import Client, handle_file

    def one_client(worker: int) -> list[Sample]:
        client = Client(url, verbose=False, download_files=False)
        samples = []
        for path in files[worker * requests:(worker + 1) * requests]:
            start = time.perf_counter()
            try:
                client.predict(handle_file(str(path)), api_name="/detect")
                samples.append(Sample(time.perf_counter() - start, None))
            except Exception as error:  # noqa: BLE001 - every failure is counted, whatever its kind
                samples.append(Sample(time.perf_counter() - start, f"{type(error).__name__}: {error}"))
        client.close()
        return samples

    with ThreadPoolExecutor(clients) as pool:
        return [sample for samples in pool.map(one_client, range(clients)) for sample in samples]


@dataclass
class SingleRequest:
    """Medians over pictures sent one at a time: wall seconds of each path, CPU seconds of the serving process."""

    client_wall: float
    http_wall: float
    direct_wall: float
    served_cpu: float | None
    direct_cpu: float
    client_empty: float  # /models, which does no model work
    http_empty: float


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a whole process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def http_call(http: httpx.Client, url: str, api_name: str, data: list) -> Any:
    """One call of a named endpoint through Gradio's plain HTTP API (what the page's "Use via API" cURL tab shows):
    POST /call/<name>, then read its event stream until the result."""
    api = url.rstrip("/") + "/gradio_api"
    event = http.post(f"{api}/call/{api_name}", json={"data": data})
    event.raise_for_status()
    with http.stream("GET", f"{api}/call/{api_name}/{event.json()['event_id']}") as stream:
        kind = None
        for line in stream.iter_lines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and kind in ("complete", "error"):
                if kind == "error":
                    raise RuntimeError(f"/{api_name} failed: {line[5:].strip()}")
                return json.loads(line[5:])[0]
    raise RuntimeError(f"/{api_name}: the event stream ended without a result")


def http_detect(http: httpx.Client, url: str, path: Path) -> dict:
    """`/detect` over plain HTTP on a kept-alive connection: upload the file, then call the endpoint with it."""
    uploaded = http.post(url.rstrip("/") + "/gradio_api/upload", files={"files": (path.name, path.read_bytes())})
    uploaded.raise_for_status()
    return http_call(http, url, "detect", [{"path": uploaded.json()[0], "orig_name": path.name,
                                            "meta": {"_type": "gradio.FileData"}}])


def single_request_latency(url: str, pid: int | None, models: list[str], files: list[Path]) -> SingleRequest:
    """One `/detect` call, by gradio_client and by plain HTTP, against the ensemble's own `predict` in this process.

    The three are interleaved picture by picture, so that a busy neighbour on the machine slows them alike; CPU time
    (the server's whole process during the HTTP call, this process for `predict`) shows the overhead without the
    neighbours' noise. `predict` runs in a worker thread, as Gradio runs handlers: PyTorch's intra-op threading
    differs between the main thread and others, which on a crowded machine changed `predict` time tenfold.
    """
    from gradio_client import Client, handle_file

    from space.service import DetectorService

    ensemble = DetectorService.from_sources(models).ensemble
    client = Client(url, verbose=False, download_files=False)
    http = httpx.Client(timeout=60)
    samples = []
    worker = ThreadPoolExecutor(1)
    try:
        worker.submit(ensemble.predict, [EXAMPLE]).result()  # warm up all three
        client.predict(handle_file(str(EXAMPLE)), api_name="/detect")
        http_detect(http, url, EXAMPLE)
        half = len(files) // 2  # the second half goes to gradio_client, so that no face cache serves it
        for path, other in zip(files[:half], files[half:]):
            wall, cpu = time.perf_counter(), time.process_time()
            worker.submit(ensemble.predict, [path.read_bytes()], [path.name]).result()
            direct = (time.perf_counter() - wall, time.process_time() - cpu)
            wall, cpu = time.perf_counter(), process_cpu_seconds(pid) if pid else 0.0
            http_detect(http, url, path)
            served = (time.perf_counter() - wall, process_cpu_seconds(pid) - cpu if pid else None)
            wall = time.perf_counter()
            client.predict(handle_file(str(other)), api_name="/detect")
            samples.append((time.perf_counter() - wall, *served, *direct))
        empty = []  # /models does no model work: what is left is each path's own fixed cost
        for _ in files:
            wall = time.perf_counter()
            client.predict(api_name="/models")
            middle = time.perf_counter()
            http_call(http, url, "models", [])
            empty.append((middle - wall, time.perf_counter() - middle))
    finally:
        client.close()
        http.close()
        worker.shutdown()
    client_wall, http_wall, served_cpu, direct_wall, direct_cpu = zip(*samples, strict=True)
    client_empty, http_empty = np.median(empty, axis=0)
    return SingleRequest(float(np.median(client_wall)), float(np.median(http_wall)), float(np.median(direct_wall)),
                         float(np.median(served_cpu)) if pid else None, float(np.median(direct_cpu)),
                         float(client_empty), float(http_empty))


def peak_rss_mb(pid: int) -> float | None:
    """The peak resident memory (VmHWM) of a process, in MiB; None when it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def report(args: argparse.Namespace, models: list[str], samples: list[Sample], wall: float, rss: float | None,
           single: SingleRequest) -> str:
    latencies = np.array([s.seconds for s in samples if s.error is None])
    failures = [s.error for s in samples if s.error]
    lines = [
        f"bench/load.py: {args.clients} clients x {args.requests} /detect requests, {time.strftime('%Y-%m-%d %H:%M')}",
        f"machine: {os.cpu_count()} CPU cores, no GPU",
        f"models: {', '.join(Path(m).name for m in models)}",
        f"requests: {len(samples)} in {wall:.1f} s ({len(samples) / wall:.2f} per s)",
        f"failures: {len(failures)}" + (f" (first: {failures[0]})" if failures else ""),
        f"latency p50: {np.percentile(latencies, 50):.3f} s, p95: {np.percentile(latencies, 95):.3f} s"
        if len(latencies) else "latency: no successful request",
        f"server peak RSS (VmHWM): {rss:.0f} MiB" if rss is not None else "server peak RSS: unknown (pass --pid)",
        f"single request, median of {args.single} interleaved, against Ensemble.predict "
        f"{single.direct_wall:.3f} s on the same picture (target <= 1.3x):",
        f"  plain HTTP API (/call/detect, kept-alive connection): {single.http_wall:.3f} s = "
        f"{single.http_wall / single.direct_wall:.2f}x",
        f"  gradio_client Client.predict: {single.client_wall:.3f} s = {single.client_wall / single.direct_wall:.2f}x",
        f"  fixed cost of each path, on /models (no model work): gradio_client {single.client_empty * 1000:.0f} ms, "
        f"plain HTTP {single.http_empty * 1000:.0f} ms",
    ]
    if single.served_cpu is not None:
        lines.append(f"  CPU time: server process {single.served_cpu:.3f} s per HTTP request vs predict "
                     f"{single.direct_cpu:.3f} s = {single.served_cpu / single.direct_cpu:.2f}x")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8, help="concurrent gradio_client clients")
    parser.add_argument("--requests", type=int, default=50, help="requests per client")
    parser.add_argument("--single", type=int, default=10, help="requests for the single-request comparison")
    parser.add_argument("--model", action="append",
                        help="model folder or Hub id; repeat for several (default: the Space's settings)")
    parser.add_argument("--url", help="an already running app (default: start app.py on a free port)")
    parser.add_argument("--pid", type=int, help="process id of the app at --url, for its peak memory")
    parser.add_argument("--output", type=Path, help="also write the report to this file")
    args = parser.parse_args(argv)
    if min(args.clients, args.requests, args.single) < 1:
        parser.error("--clients, --requests and --single must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ.update(OFFLINE_ENV)
    with tempfile.TemporaryDirectory(prefix="bench_load_") as scratch:
        scratch = Path(scratch)
        models = args.model or load_space_config().models
        models = models or [make_stand_in_model(scratch / "stand-in-lite0-192")]
        files = make_variants(args.clients * args.requests + 2 * args.single, scratch)
        app = None if args.url else start_app(models, scratch / "uploads")
        url = args.url or app.url
        pid = args.pid or (app.process.pid if app else None)
        try:
            single = single_request_latency(url, pid, models, files[:2 * args.single])
            start = time.perf_counter()
            samples = run_clients(url, files[2 * args.single:], args.clients, args.requests)
            wall = time.perf_counter() - start
            rss = peak_rss_mb(pid) if pid else None
        finally:
            if app:
                app.stop()
    text = report(args, models, samples, wall, rss, single)
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
