"""The package layout (#42): command-line modules are never imported as libraries, library modules hold no command
line, no two modules import each other through any chain, and benchmarks share code only through bench.common."""
from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO_ROOT

PACKAGES = ("hub_utils", "training", "bench", "space")


def modules() -> dict[str, Path]:
    found = {"app": REPO_ROOT / "app.py"}
    for package in PACKAGES:
        for path in (REPO_ROOT / package).glob("*.py"):
            found[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules that `name` imports anywhere in its file (inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = (name.split(".")[0] + (f".{node.module}" if node.module else "")) if node.level else node.module
            found |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return (found & known) - {name}


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def is_command(path: Path) -> bool:
    text = path.read_text()
    return "import argparse" in text or 'if __name__ == "__main__"' in text


def test_no_module_imports_a_command_line_module() -> None:
    commands = {name for name, path in modules().items() if is_command(path)}
    assert {"training.train", "training.evaluate", "hub_utils.detect", "training.prepare"} <= commands
    offenders = {name: sorted(targets & commands) for name, targets in graph().items() if targets & commands}
    assert not offenders, f"command-line modules imported as libraries: {offenders}"


def test_no_import_cycle() -> None:
    edges = graph()
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for target in sorted(edges[name]):
            assert state.get(target) != "open", f"import cycle: {' -> '.join([*path, target])}"
            if target not in state:
                visit(target, [*path, target])
        state[name] = "done"

    for name in sorted(edges):
        if name not in state:
            visit(name, [name])


def test_benchmarks_share_code_only_through_bench_common() -> None:
    for name, targets in graph().items():
        if name.startswith("bench."):
            assert {t for t in targets if t.startswith("bench")} <= {"bench.common"} - {name}, name
