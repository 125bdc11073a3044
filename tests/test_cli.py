"""One command-line vocabulary: every command documents each of its options in --help, and a usage error (an unknown
flag, a bad value, a missing input) exits with status 2, as argparse's own errors do."""
from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

# module -> the argv prefixes whose --help is checked (a command with subcommands: each of them too)
CLI_MODULES = {
    "hub_utils.detect": [[]],
    "hub_utils.push": [[]],
    "hub_utils.fetch_backbone": [[]],
    "training.train": [[]],
    "training.evaluate": [[]],
    "training.soup": [[]],
    "training.recalibrate": [[]],
    "training.export": [[]],
    "training.prepare": [[], ["describe"], ["faces"], ["preview"]],
    "bench.augment": [[]],
    "bench.feature_probe": [[]],
    "bench.frozen_head_choices": [[]],
    "bench.inference": [[]],
    "bench.leave_one_out": [[]],
    "bench.load": [[]],
    "bench.operating_points": [[]],
    "bench.provenance_check": [[]],
    "bench.results_table": [[]],
    "bench.shortcut_audit": [[]],
    "bench.speed_ab": [[]],
}


def exit_status(main: Callable[[Sequence[str]], int | None], argv: list[str]) -> int:
    """What `python -m MODULE ARGV` would exit with: main's return value, or the status it exits with."""
    try:
        return main(argv) or 0
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 1


def test_every_module_with_a_parser_is_checked() -> None:
    with_argparse = {f"{path.parent.name}.{path.stem}" for folder in ("hub_utils", "training", "bench", "space")
                     for path in (REPO_ROOT / folder).glob("*.py") if "import argparse" in path.read_text()}
    assert with_argparse == set(CLI_MODULES)
    assert "import argparse" not in (REPO_ROOT / "app.py").read_text()


@pytest.mark.parametrize(("module", "prefix"), [(m, p) for m, prefixes in CLI_MODULES.items() for p in prefixes])
def test_help_documents_every_option(module: str, prefix: list[str], monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture) -> None:
    shown: list[argparse.ArgumentParser] = []
    print_help = argparse.ArgumentParser.print_help

    def record(self: argparse.ArgumentParser, file=None) -> None:
        shown.append(self)
        print_help(self, file)

    monkeypatch.setattr(argparse.ArgumentParser, "print_help", record)
    main = importlib.import_module(module).main
    assert exit_status(main, [*prefix, "--help"]) == 0
    text = capsys.readouterr().out
    for action in shown[-1]._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            assert all(name in text for name in action.choices), module
            continue
        name = "/".join(action.option_strings) or action.dest
        assert action.help, f"{module} {' '.join(prefix)}: {name} has no help text"
        if action.option_strings:
            assert all(option in text for option in action.option_strings), f"{module}: {name} not in --help"
        else:
            assert (action.metavar or action.dest) in text, f"{module}: {name} not in --help"


@pytest.mark.parametrize(("module", "prefix"), [(m, p[-1]) for m, p in CLI_MODULES.items()])
def test_an_unknown_flag_exits_2(module: str, prefix: list[str], capsys: pytest.CaptureFixture) -> None:
    main = importlib.import_module(module).main
    assert exit_status(main, [*prefix, "--no-such-option"]) == 2
    assert "usage:" in capsys.readouterr().err


def usage_errors(tmp: Path) -> list[tuple[str, list[str]]]:
    """Bad values and missing inputs that every command refuses before any work."""
    missing = str(tmp / "missing")
    return [
        ("hub_utils.detect", ["x.jpg", "--batch-size", "0"]),
        ("hub_utils.push", [missing]),
        ("training.train", ["--epochs", "1"]),  # no --data or --output
        ("training.train", ["--config", f"{missing}.json"]),
        ("training.train", ["--data", missing, "--output", missing, "--neutral-p", "2"]),
        ("training.evaluate", ["--data", missing, "--output", "x.json"]),  # no --model
        ("training.soup", ["--model", missing, "--data", missing, "--output", missing]),  # one member
        ("training.recalibrate", ["--model", missing]),  # no --data
        ("training.export", ["--data", missing, "--output", missing, "--per-class", "0"]),
        ("training.prepare", ["describe", missing, "--output", f"{missing}.json"]),
        ("training.prepare", ["preview", "--data", missing, "--output", "grid.png", "--n", "0"]),
        ("bench.augment", ["--steps", "0"]),
        ("bench.feature_probe", ["--fuse", "models/a"]),
        ("bench.frozen_head_choices", ["--config", f"{missing}.json"]),
        ("bench.inference", ["--images", "0"]),
        ("bench.leave_one_out", ["--augment", "jpeg_p"]),
        ("bench.load", ["--clients", "0"]),
        ("bench.operating_points", [missing]),
        ("bench.shortcut_audit", ["--data", missing]),
        ("bench.speed_ab", [missing, "."]),
        ("bench.speed_ab", [".", ".", "--rounds", "0"]),
    ]


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    for module, argv in usage_errors(tmp_path):
        assert exit_status(importlib.import_module(module).main, argv) == 2, (module, argv)
    assert not list(tmp_path.iterdir())  # refused before writing anything
