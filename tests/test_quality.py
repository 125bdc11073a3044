"""Tests for training.quality: the problem scan (undecodable, too small, repeated bytes) and processing-matched
sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_data import smooth_image, write, write_tree
from training.data import load_source
from training.quality import drop_unusable, processing_matched_sources, scan_problems


def test_processing_matched_sources(tmp_path: Path):
    """A source is matched when its real and fake files share their usual size and format; one-label sources never."""
    for i in range(3):
        write(tmp_path / "same" / "real" / "cam" / f"r{i}.png", smooth_image(i))
        write(tmp_path / "same" / "fake" / "gan" / f"f{i}.png", smooth_image(10 + i))
        write(tmp_path / "sizes" / "real" / "cam" / f"r{i}.jpg", smooth_image(20 + i, size=48), quality=90)
        write(tmp_path / "sizes" / "fake" / "gan" / f"f{i}.jpg", smooth_image(30 + i, size=96), quality=90)
        write(tmp_path / "formats" / "real" / "cam" / f"r{i}.jpg", smooth_image(40 + i), quality=90)
        write(tmp_path / "formats" / "fake" / "gan" / f"f{i}.png", smooth_image(50 + i))
        write(tmp_path / "reals" / "real" / "cam" / f"r{i}.png", smooth_image(60 + i))
    write(tmp_path / "same" / "fake" / "gan" / "odd.jpg", smooth_image(70, size=80))  # a minority kind is allowed
    assert processing_matched_sources(load_source(str(tmp_path))) == ["same"]


def test_scan_problems_and_drop(tmp_path: Path):
    ds = load_source(str(write_tree(tmp_path / "mysrc")))
    problems = {p["path"]: p["reason"] for p in scan_problems(ds)}
    assert problems["mysrc/fake/gan/broken.jpg"].startswith("undecodable")
    assert problems["mysrc/real/cam/tiny.png"].startswith("too small: 20x20")
    assert problems["mysrc/real/cam/r0.png"] == "duplicate of mysrc/real/cam/dup.png"
    assert len(problems) == 3
    assert len(drop_unusable(ds)) == len(ds) - 3
    reversed_rows = ds.select(range(len(ds) - 1, -1, -1))  # the copy kept is the smallest path, in any row order
    assert {p["path"]: p["reason"] for p in scan_problems(reversed_rows)} == problems


def test_a_file_is_decoded_once_per_process_however_often_the_data_is_split(tmp_path: Path, monkeypatch):
    """Splitting the data again (a bench does per run) gives the same inspection without decoding any file again."""
    from training import quality

    ds = load_source(str(write_tree(tmp_path / "mysrc")))
    first = quality.inspect_dataset(ds)

    def no_decoding(*args, **kwargs):
        raise AssertionError("a file inspected before was decoded again")

    monkeypatch.setattr(quality.Image, "open", no_decoding)
    assert quality.inspect_dataset(ds) == first
    with pytest.raises(AssertionError, match="decoded again"):  # another size rule is another inspection
        quality.inspect_dataset(ds, min_side=64)
