"""The README as a newcomer uses it: it fits the Space's page, and each Python snippet prints its result for a real
photo and fails loudly (non-zero exit, the reason on stderr) for a photo that is not there."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.load import start_app
from tests.conftest import REPO_ROOT, make_model_folder

README = REPO_ROOT / "README.md"
ASTRONAUT = REPO_ROOT / "space" / "examples" / "astronaut.jpg"
MAX_README_BYTES = 15_000


def python_block(marker: str) -> str:
    """The first ```python block of the README after `marker`."""
    return README.read_text().split(marker, 1)[1].split("```python\n", 1)[1].split("```", 1)[0]


def run_snippet(code: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_readme_fits_its_limit() -> None:
    assert len(README.read_bytes()) <= MAX_README_BYTES


@pytest.mark.slow
@pytest.mark.parametrize("marker", ["## Load a model in your code", "Bare timm and transformers"])
def test_loading_snippets_print_and_fail_loudly(marker: str) -> None:
    code = python_block(marker)
    assert '"photo.jpg"' in code
    found = run_snippet(code.replace('"photo.jpg"', repr(str(ASTRONAUT))))
    assert found.returncode == 0, found.stderr[-2000:]
    assert found.stdout.strip(), "the snippet printed nothing"
    missing = run_snippet(code)  # no photo.jpg in the repository's root
    assert missing.returncode != 0 and "photo.jpg" in missing.stderr


@pytest.mark.slow
def test_client_snippet_prints_and_fails_loudly(tmp_path: Path) -> None:
    folder = make_model_folder(tmp_path / "models" / "tiny-readme")
    app = start_app([str(folder)], tmp_path / "uploads")
    try:
        code = python_block("## Call the Space").replace("http://127.0.0.1:7860/", app.url)
        photos = tmp_path / "photos"
        photos.mkdir()
        for name in ("face.jpg", "a.jpg", "b.png"):
            shutil.copy(ASTRONAUT, photos / name)
        found = run_snippet(code, cwd=photos)
        assert found.returncode == 0, found.stderr[-2000:]
        lines = [line for line in found.stdout.splitlines() if not line.startswith("Loaded as API")]
        assert lines[0].split()[0] in ("real", "fake") and "'file', 'face'" in lines[1] and lines[-1] == "tiny-readme"
        (photos / "face.jpg").unlink()
        missing = run_snippet(code, cwd=photos)
        assert missing.returncode != 0 and "face.jpg does not exist" in missing.stderr
    finally:
        app.stop()
