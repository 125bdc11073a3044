"""Tests for training.prepare: the describe and faces commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.test_data import write, write_tree
from training import prepare
from training.data import load_source
from training.quality import drop_unusable


def test_describe_cli(tmp_path: Path, capsys):
    tree = write_tree(tmp_path / "mysrc")
    output = tmp_path / "out" / "describe.json"
    prepare.main(["describe", str(tree), "--output", str(output), "--split-seed", "1"])
    report = json.loads(output.read_text())
    assert {"total", "skipped", "splits"} <= set(report)
    assert report["total"] == 19 and len(report["skipped"]) == 3
    assert set(report["splits"]) == {"train", "validation", "test"}
    assert sum(sum(c.values()) for c in report["splits"].values()) == 16
    assert "real/cam" in report["splits"]["train"]
    assert "label/generator" in capsys.readouterr().out


def test_faces_cli_fills_the_cache_training_reads(tmp_path: Path, astronaut: Image.Image, capsys):
    from hub_utils.faces import FaceFinder
    from training.dataset import image_of
    from training.perturb import neutral_reencode

    root = tmp_path / "src"
    write(root / "real" / "cam" / "astronaut.png", astronaut)
    write(root / "fake" / "gan" / "noise.png", Image.fromarray(
        np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)))
    (root / "fake" / "gan" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    cache = tmp_path / "cache"
    prepare.main(["faces", str(root), "--face-cache", str(cache)])
    assert capsys.readouterr().out.startswith("1 unreadable, 1 with a face, 1 without a face")
    assert len(list(cache.glob("*.json"))) == 4  # two readable images, as stored and neutrally re-encoded

    cached = FaceFinder(cache)
    cached._detect = lambda image: pytest.fail("the training loader's lookup missed the warmed cache")
    rows = list(drop_unusable(load_source(str(root))))  # as training gets them
    faces = {Path(row["path"]).name: cached.find(image_of(row)) for row in rows}
    assert len(faces["astronaut.png"]) == 1 and faces["noise.png"] == []
    for row in rows:
        cached.find(neutral_reencode(image_of(row)))
