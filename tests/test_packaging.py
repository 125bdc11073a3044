"""One dependency list: requirements.txt (what the Space installs) and pyproject.toml (what `pip install .` installs)
name the same pins."""
from __future__ import annotations

import csv
import shutil
import subprocess
import sys

import tomllib

from tests.conftest import REPO_ROOT


def requirement_lines() -> set[str]:
    lines = (line.split("#")[0].strip() for line in (REPO_ROOT / "requirements.txt").read_text().splitlines())
    return {line for line in lines if line}


def test_requirements_and_pyproject_pin_the_same_packages() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    declared = set(project["dependencies"]) | set(project["optional-dependencies"]["test"])
    assert requirement_lines() == declared


def test_the_installed_package_works_from_any_folder(model_dir, astronaut, tmp_path) -> None:
    """`pip install -e .` (the README's set-up) puts the library and the `deepfake-detect` command on the path:
    both work from a folder outside the repository."""
    command = shutil.which("deepfake-detect")
    assert command, ("deepfake-detect is not installed: run `pip install -r requirements.txt -e .` (the README's "
                     "set-up command)")
    astronaut.save(tmp_path / "astronaut.jpg")
    library = subprocess.run([sys.executable, "-c", "from hub_utils import load_detector; print(load_detector)"],
                             cwd=tmp_path, capture_output=True, text=True)
    assert library.returncode == 0, library.stderr
    scored = subprocess.run([command, "astronaut.jpg", "--model", str(model_dir), "--output", "scores.csv"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert scored.returncode == 0, scored.stderr
    rows = list(csv.DictReader((tmp_path / "scores.csv").open()))
    assert [row["path"] for row in rows] == ["astronaut.jpg"]
    assert rows[0]["verdict"] in ("real", "fake") and 0.0 <= float(rows[0]["fake_probability"]) <= 1.0
