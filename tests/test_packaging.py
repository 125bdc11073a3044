"""One dependency list: requirements.txt (what the Space installs) and pyproject.toml (what `pip install .` installs)
name the same pins."""
from __future__ import annotations

import tomllib

from tests.conftest import REPO_ROOT


def requirement_lines() -> set[str]:
    lines = (line.split("#")[0].strip() for line in (REPO_ROOT / "requirements.txt").read_text().splitlines())
    return {line for line in lines if line}


def test_requirements_and_pyproject_pin_the_same_packages() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    declared = set(project["dependencies"]) | set(project["optional-dependencies"]["test"])
    assert requirement_lines() == declared
