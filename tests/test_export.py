"""Tests for training.export: balanced plan, augmentation, resumable shards, settings check, CLI."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from training import export
from training.export import ExportError, ExportSettings, export_dataset, plan_examples


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """5 real and 3 fake 48x40 noise images."""
    rng = np.random.default_rng(0)
    for label, count in (("real", 5), ("fake", 3)):
        for i in range(count):
            path = tmp_path / "src" / label / "gen" / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(path)
    return tmp_path / "src"


def settings_for(source: Path, **overrides) -> ExportSettings:
    values = dict(data=[str(source)], per_class=7, seed=0, split="all", image_size=32, shard_size=3)
    return ExportSettings(**{**values, **overrides})


def raw(ds: datasets.Dataset) -> list[bytes]:
    return [image["bytes"] for image in ds.cast_column("image", datasets.Image(decode=False))["image"]]


def test_plan_balances_and_oversamples_evenly():
    labels = [0] * 10 + [1] * 3
    plan = plan_examples(labels, per_class=8, seed=1)
    assert len(plan) == 16
    assert Counter(labels[i] for i, _ in plan) == {0: 8, 1: 8}
    reals = [i for i, _ in plan if labels[i] == 0]
    assert len(set(reals)) == 8  # enough rows: no repeats
    fake_uses = Counter(i for i, _ in plan if labels[i] == 1)
    assert set(fake_uses.values()) <= {2, 3}  # 8 from 3 rows: every row used 2 or 3 times
    assert sorted(c for i, c in plan if i == 10) == list(range(fake_uses[10]))
    assert plan == plan_examples(labels, per_class=8, seed=1)
    assert plan != plan_examples(labels, per_class=8, seed=2)
    with pytest.raises(ExportError, match="No fake images"):
        plan_examples([0, 0], per_class=1, seed=0)


def test_export_augmented(source: Path, tmp_path: Path):
    exported = export_dataset(settings_for(source), tmp_path / "out")
    assert len(exported) == 14
    assert Counter(exported["label"]) == {0: 7, 1: 7}
    assert all(exported["augmented"])
    assert {exported[i]["image"].size for i in range(4)} == {(32, 32)}
    assert not (tmp_path / "out" / export.SHARDS_NAME).exists()
    assert len(datasets.load_from_disk(str(tmp_path / "out"))) == 14


def test_export_without_augmentation_keeps_original_bytes(source: Path, tmp_path: Path):
    exported = export_dataset(settings_for(source, augment=False, per_class=5), tmp_path / "out")
    originals = {p.relative_to(source.parent).as_posix(): p.read_bytes() for p in source.rglob("*.png")}
    for row, data in zip(exported.remove_columns("image"), raw(exported)):
        if row["copy"] == 0:
            assert not row["augmented"] and data == originals[row["path"]]
        else:
            assert row["augmented"] and row["label"] == 1  # only the short fake class (3 of 5) is oversampled
    assert sum(exported["augmented"]) == 2


def test_export_resumes_after_interruption(source: Path, tmp_path: Path, monkeypatch):
    settings = settings_for(source)
    reference = raw(export_dataset(settings, tmp_path / "reference"))
    real_write = export.write_shard
    calls: list[Path] = []

    def failing_write(rows, directory):
        if len(calls) == 2:
            raise KeyboardInterrupt("simulated interruption")
        calls.append(directory)
        real_write(rows, directory)

    monkeypatch.setattr(export, "write_shard", failing_write)
    with pytest.raises(KeyboardInterrupt):
        export_dataset(settings, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out" / export.SHARDS_NAME).iterdir()) == ["00000", "00001"]
    calls.clear()
    monkeypatch.setattr(export, "write_shard", lambda rows, d: (calls.append(d), real_write(rows, d)))
    resumed = export_dataset(settings, tmp_path / "out")
    assert [p.name for p in calls] == ["00002", "00003", "00004"]  # 14 examples in shards of 3
    assert raw(resumed) == reference


def test_resume_with_other_settings_raises(source: Path, tmp_path: Path):
    export_dataset(settings_for(source), tmp_path / "out")
    with pytest.raises(ExportError, match="other settings"):
        export_dataset(settings_for(source, per_class=5), tmp_path / "out")


def test_cli_exports_the_train_split(source: Path, tmp_path: Path, capsys):
    export.main(["--data", str(source), "--output", str(tmp_path / "cli"), "--per-class", "4",
                 "--image-size", "24", "--no-augment"])
    assert "saved 8 examples" in capsys.readouterr().out
    assert Counter(datasets.load_from_disk(str(tmp_path / "cli"))["label"]) == {0: 4, 1: 4}
