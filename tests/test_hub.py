"""Hub round trip without the internet: push is checked up to the network call; pull runs the real
huggingface_hub, timm `hf-hub:` and transformers clients against a local Hub mirror (olah) the test starts."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import pytest

from hub_utils import ModelFolderError
from hub_utils.push import files_to_push, push_folder, stage
from tests.conftest import REPO_ROOT, make_model_folder

PULL_SCRIPT = """
import json, sys, timm, torch
from hub_utils import load_detector
from transformers import pipeline
from skimage import data
from PIL import Image
repo = sys.argv[1]
detector = load_detector(repo + "@main")
region = detector.regions(Image.fromarray(data.astronaut()))[0][0]
ours = float(detector.score_regions([region])[0])
model = timm.create_model("hf-hub:" + repo, pretrained=True).eval()
transform = timm.data.create_transform(**timm.data.resolve_data_config(model=model))
with torch.no_grad():
    bare = model(transform(region).unsqueeze(0)).softmax(1)[0, 1].item()
# olah answers 401 (not 404) for files a repo lacks, which transformers' optional-file probes treat as fatal,
# so transformers reads the snapshot that huggingface_hub downloaded from the mirror into the standard cache.
from huggingface_hub import snapshot_download
snapshot = snapshot_download(repo)
fake = {r["label"]: r["score"] for r in pipeline("image-classification", model=snapshot)(region)}["fake"]
print(json.dumps({"ours": ours, "timm": bare, "transformers": fake, "revision": detector.revision,
                  "name": detector.name}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True, text=True).stdout.strip()


@contextmanager
def serve_mirror(tmp_path: Path, fill: Callable[[Path], object], repo_id: str = "someone/tiny-detector"):
    """A git model repo (filled by `fill(folder)`) served by olah on a free localhost port; yields
    (endpoint, repo_id, commit)."""
    repo = tmp_path / "mirrors" / "models" / repo_id
    repo.mkdir(parents=True)
    fill(repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "model")
    port = free_port()
    config = tmp_path / "olah.toml"
    config.write_text(f'[basic]\nhost = "127.0.0.1"\nport = {port}\nrepos-path = "{tmp_path / "repos"}"\n'
                      f'mirrors-path = ["{tmp_path / "mirrors"}"]\nmirror-netloc = "127.0.0.1:{port}"\n'
                      f'mirror-lfs-netloc = "127.0.0.1:{port}"\n[accessibility]\noffline = true\n')
    server = subprocess.Popen([sys.executable, "-m", "olah.server", "-c", str(config)], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("olah did not start within 60 s")
        yield f"http://127.0.0.1:{port}", repo_id, git(repo, "rev-parse", "HEAD")
    finally:
        server.kill()
        server.wait()


def mirror_env(endpoint: str, tmp_path: Path) -> dict[str, str]:
    """The environment of a process that talks to the mirror as if it were the Hub."""
    return {**os.environ, "HF_ENDPOINT": endpoint, "HF_HUB_DISABLE_XET": "1", "HF_HUB_OFFLINE": "0",
            "HF_HOME": str(tmp_path / "hf_home"), "PYTHONPATH": str(REPO_ROOT)}


@pytest.fixture()
def hub_mirror(tmp_path: Path, model_dir: Path):
    with serve_mirror(tmp_path, lambda repo: stage(model_dir, repo)) as served:
        yield served


@pytest.mark.slow
def test_pull_with_our_loader_timm_and_transformers(hub_mirror, tmp_path: Path) -> None:
    endpoint, repo_id, commit = hub_mirror
    done = subprocess.run([sys.executable, "-c", PULL_SCRIPT, repo_id], env=mirror_env(endpoint, tmp_path),
                          capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["revision"] == commit and result["name"] == repo_id
    assert result["ours"] == pytest.approx(result["timm"], abs=1e-5)
    assert result["transformers"] == pytest.approx(result["timm"], abs=1e-4)
    downloaded = {p.name for p in (tmp_path / "hf_home").rglob("*") if p.is_file() and "snapshots" in p.parts}
    assert {"config.json", "model.safetensors"} <= downloaded


def test_push_stages_exact_files(model_dir: Path, tmp_path: Path) -> None:
    (model_dir / "training_curves.png").write_bytes(b"\x89PNG fake plot")
    (model_dir / "notes.txt").write_text("not published")
    staged = tmp_path / "staged"
    staged.mkdir()
    assert sorted(stage(model_dir, staged)) == ["README.md", "config.json", "model.safetensors", "training_curves.png"]
    (model_dir / "notes.txt").unlink()
    (model_dir / "training_curves.png").unlink()


def test_push_refuses_pickle_only_and_cardless_folders(tmp_path: Path) -> None:
    folder = make_model_folder(tmp_path / "m")
    (folder / "README.md").unlink()
    with pytest.raises(ModelFolderError, match="model card"):
        files_to_push(folder)
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(ModelFolderError, match="pickle"):
        files_to_push(folder)


class RecordingApi:
    """Stands in for the network only: records the calls push makes and what the upload folder holds."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def create_repo(self, repo_id: str, **kw) -> None:
        self.calls.append(("create_repo", {"repo_id": repo_id, **kw}))

    def create_branch(self, repo_id: str, **kw) -> None:
        self.calls.append(("create_branch", {"repo_id": repo_id, **kw}))

    def upload_folder(self, folder_path: str, **kw) -> str:
        files = sorted(p.name for p in Path(folder_path).iterdir())
        card = (Path(folder_path) / "README.md").read_text()
        self.calls.append(("upload_folder", {"files": files, "card_has_license": "license:" in card, **kw}))
        return "https://huggingface.co/someone/x/commit/abc"


@pytest.mark.parametrize("env", [{"HF_HUB_OFFLINE": "1"}, {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"}],
                         ids=["offline mode", "no server"])
def test_push_without_the_hub_says_so_in_one_line(model_dir: Path, env: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, "-m", "hub_utils.push", str(model_dir), "me/detector"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "HF_TOKEN": "hf_x", **env})
    assert done.returncode == 1 and "could not reach the Hub" in done.stderr and "Traceback" not in done.stderr


def test_push_calls_create_repo_then_upload(model_dir: Path) -> None:
    api = RecordingApi()
    assert push_folder(model_dir, "someone/x", private=True, revision="v1", api=api).endswith("abc")
    names = [name for name, _ in api.calls]
    assert names == ["create_repo", "create_branch", "upload_folder"]
    assert api.calls[0][1]["private"] is True
    upload = api.calls[2][1]
    assert upload["files"] == ["README.md", "config.json", "model.safetensors"] and upload["card_has_license"]
    assert upload["revision"] == "v1" and upload["repo_id"] == "someone/x"
