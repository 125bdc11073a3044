"""Tests for training.data: every source layout (folder trees with and without a manifest, challenge zips, Hub
datasets, streaming) and the near-duplicate keys it gives."""

from __future__ import annotations

import io
import zipfile
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from hub_utils.constants import LABEL_NAMES
from training import data
from training.data import FEATURES, DataError, load_source
from training.split import split_dataset

FACES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "faces"


def smooth_image(seed: int, size: int = 64) -> Image.Image:
    """A smooth random image: upsampled 8x8 noise, so re-encoding keeps its perceptual hash."""
    cells = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return Image.fromarray(cells).resize((size, size), Image.Resampling.BICUBIC)


def write(path: Path, image: Image.Image, **save_kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **save_kwargs)
    return path


def image_bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def write_tree(root: Path) -> Path:
    """`root/<real|fake>/<generator>/...` with a duplicate, a near-duplicate, grid tiles, a corrupt and a tiny file."""
    for i in range(6):
        write(root / "real" / "cam" / f"r{i}.png", smooth_image(i))
        write(root / "fake" / "gan" / f"f{i}.png", smooth_image(100 + i))
    (root / "real" / "cam" / "dup.png").write_bytes((root / "real" / "cam" / "r0.png").read_bytes())
    write(root / "real" / "cam" / "near.jpg", smooth_image(1), quality=95)
    write(root / "real" / "celeba" / "fig_r00_c00.png", smooth_image(200))
    write(root / "fake" / "attgan" / "fig_r00_c01.png", smooth_image(201))
    write(root / "fake" / "loose.png", smooth_image(300))
    (root / "fake" / "gan" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    write(root / "real" / "cam" / "tiny.png", smooth_image(400, size=20))
    (root / "real" / "cam" / "notes.txt").write_text("not an image")
    return root


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "mysrc")


def test_features_and_labels_are_the_shared_contract():
    assert LABEL_NAMES == ["real", "fake"]
    assert FEATURES["label"].names == ["real", "fake"]
    assert list(FEATURES) == ["image", "label", "generator", "source", "path", "group"]


def test_single_source_tree_columns(tree: Path):
    ds = load_source(str(tree))
    rows = {row["path"]: row for row in ds.remove_columns("image")}
    assert len(ds) == 19  # the .txt file is ignored
    assert rows["mysrc/real/cam/r0.png"] == {
        "label": 0, "generator": "cam", "source": "mysrc", "path": "mysrc/real/cam/r0.png",
        "group": "mysrc/real/cam/r0.png",
    }
    assert rows["mysrc/fake/gan/f0.png"]["label"] == 1
    assert rows["mysrc/fake/loose.png"]["generator"] == "unknown"
    tiles = [rows["mysrc/real/celeba/fig_r00_c00.png"], rows["mysrc/fake/attgan/fig_r00_c01.png"]]
    assert {t["group"] for t in tiles} == {"mysrc/fig/row0"}
    assert ds[0]["image"].size == (64, 64)


def test_multi_source_tree_uses_manifest(tmp_path: Path):
    for name in ("a", "b"):
        write(tmp_path / name / "real" / "cam" / "x.png", smooth_image(ord(name)))
    write(tmp_path / "b" / "fake" / "gen" / "grid_r02_c05.png", smooth_image(7))
    manifest = "relpath\tlabel\tgenerator\tnote\n" + "b/fake/gen/grid_r02_c05.png\tfake\tstylegan\t" \
        "SLICE of grid (row 3, col 5; px box)\n"
    (tmp_path / "MANIFEST.tsv").write_text(manifest)
    rows = {row["path"]: row for row in load_source(str(tmp_path)).remove_columns("image")}
    assert set(rows) == {"a/real/cam/x.png", "b/real/cam/x.png", "b/fake/gen/grid_r02_c05.png"}
    assert rows["a/real/cam/x.png"]["source"] == "a"
    tile = rows["b/fake/gen/grid_r02_c05.png"]
    assert (tile["generator"], tile["group"]) == ("stylegan", "b/grid/row3")


def test_group_key_pairs_inputs_with_their_edits():
    assert data.group_key("s", "s/real/celeba/aged_ori1.png") == data.group_key("s", "s/fake/stargan/aged_tar1.png")
    assert data.group_key("s", "s/real/celeba/aged_ori1.png") != data.group_key("s", "s/real/celeba/aged_ori2.png")
    assert data.group_key("s", "s/real/x/plain.png") == "s/real/x/plain.png"
    figure = "assets/result.png"  # the manifest's origin of a tile: every tile of one figure shares it
    assert data.group_key("s", "s/real/c/result_r01_c00.png", origin=figure) == data.group_key(
        "s", "s/fake/g/result_r07_c02.png", origin=figure)
    assert data.group_key("s", "s/real/c/fig_r01_c00.png") != data.group_key("s", "s/real/c/fig_r02_c00.png")


def make_challenge(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, seeds in {"0-CelebA.zip": (1, 2), "1-ATTGAN.zip": (3, 4, 5)}.items():
        with zipfile.ZipFile(folder / name, "w") as archive:
            for seed in seeds:
                archive.writestr(f"{name[2:-4]}/img{seed}.png", image_bytes(smooth_image(seed)))
    with zipfile.ZipFile(folder / "test.zip", "w") as archive:
        for seed in (10, 11):
            archive.writestr(f"test/t{seed}.jpg", image_bytes(smooth_image(seed), "JPEG"))
    return folder


def test_challenge_zips(tmp_path: Path):
    ds = load_source(str(make_challenge(tmp_path / "challenge")))
    counts = Counter((row["label"], row["generator"], row["source"]) for row in ds.remove_columns("image"))
    assert counts == {(0, "CelebA", "challenge"): 2, (1, "ATTGAN", "challenge"): 3}
    assert ds[0]["image"].size == (64, 64)
    assert ds[0]["path"] == "0-CelebA.zip/CelebA/img1.png"


@pytest.mark.parametrize("fake_value", [0, 1])
def test_challenge_test_zip_label_convention(tmp_path: Path, fake_value: int):
    folder = make_challenge(tmp_path / "challenge")
    labels = folder / "labels.txt"
    labels.write_text("t10.jpg 0\nt11.jpg 1\n")
    ds = load_source(str(folder / "test.zip"), challenge_test_labels=str(labels), challenge_fake_value=fake_value)
    by_name = {Path(row["path"]).name: row["label"] for row in ds.remove_columns("image")}
    fake = LABEL_NAMES.index("fake")
    assert by_name == ({"t10.jpg": fake, "t11.jpg": 1 - fake} if fake_value == 0 else {"t10.jpg": 0, "t11.jpg": 1})
    assert set(ds["source"]) == {"challenge_test"} and set(ds["generator"]) == {"unknown"}


def test_bad_label_file_line_raises(tmp_path: Path):
    folder = make_challenge(tmp_path / "challenge")
    (folder / "labels.txt").write_text("t10.jpg maybe\n")
    with pytest.raises(DataError, match="labels.txt:1"):
        load_source(str(folder), challenge_test_labels=str(folder / "labels.txt"))


def test_unusable_sources_raise(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="No labelled images"):
        load_source(str(tmp_path / "empty"))
    with pytest.raises(DataError, match="neither an existing folder"):
        load_source(str(tmp_path / "missing"))
    with pytest.raises(DataError, match="Could not load Hub dataset"):
        load_source("nobody-here/no-such-dataset")


def test_streaming_matches_eager(tree: Path):
    streamed = load_source(str(tree), streaming=True)
    assert isinstance(streamed, datasets.IterableDataset)
    assert next(iter(streamed))["image"].size == (64, 64)
    rows = list(streamed.cast_column("image", datasets.Image(decode=False)))  # the tree holds a corrupt file
    eager = load_source(str(tree))
    assert [r["path"] for r in rows] == eager["path"]
    assert [r["label"] for r in rows] == eager["label"]
    assert [r["group"] for r in rows] == eager["group"]


@pytest.mark.parametrize(
    ("feature", "values", "expected"),
    [
        (datasets.ClassLabel(names=["fake", "real"]), [0, 1], [1, 0]),
        (datasets.Value("int64"), [0, 1], [0, 1]),
        (datasets.Value("string"), ["Real", "FAKE"], [0, 1]),
    ],
)
def test_hub_datasets_are_mapped(monkeypatch, feature, values, expected):
    images = [smooth_image(1), smooth_image(2)]
    hub = datasets.Dataset.from_dict(
        {"img": images, "label": values}, features=datasets.Features({"img": datasets.Image(), "label": feature})
    )
    calls = []
    monkeypatch.setattr(datasets, "load_dataset",
                        lambda *a, **k: calls.append((a, k)) or datasets.DatasetDict(train=hub))
    ds = load_source("user/faces@v1")
    assert calls == [(("user/faces",), {"revision": "v1", "streaming": False})]
    assert ds.features == FEATURES
    assert ds["label"] == expected
    assert ds["source"] == ["user/faces"] * 2 and ds["generator"] == ["unknown"] * 2
    assert ds[1]["image"].size == (64, 64)


def test_hub_streaming_is_mapped(monkeypatch):
    hub = datasets.Dataset.from_dict({"image": [smooth_image(1), smooth_image(2)], "label": ["fake", "real"]},
                                     features=datasets.Features({"image": datasets.Image(),
                                                                 "label": datasets.Value("string")}))
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: hub.to_iterable_dataset())
    rows = list(load_source("user/faces", streaming=True))
    assert [(r["label"], r["path"], r["image"].size) for r in rows] == [(1, "user/faces/0", (64, 64)),
                                                                         (0, "user/faces/1", (64, 64))]


def test_challenge_zips_stream(tmp_path: Path):
    rows = list(load_source(str(make_challenge(tmp_path / "challenge")), streaming=True))
    assert [r["label"] for r in rows] == [0, 0, 1, 1, 1]
    assert rows[0]["image"].size == (64, 64)


def test_hub_string_label_that_is_not_real_or_fake_raises(monkeypatch):
    hub = datasets.Dataset.from_dict({"image": [smooth_image(1)], "label": ["cat"]},
                                     features=datasets.Features({"image": datasets.Image(),
                                                                 "label": datasets.Value("string")}))
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: hub)
    with pytest.raises(DataError, match="'cat'"):
        load_source("user/cats")


def test_real_faces_groups_tiles_and_pairs():
    if not (FACES / "MANIFEST.tsv").is_file():
        pytest.skip(f"real faces not available at {FACES} (see shared/data/README.md)")
    ds = load_source(str(FACES))
    assert len(ds) == 6289
    tiled = ("attgan_pytorch_grids", "tf2gan_stargan", "taki0112_gdwct", "stargan_official")
    subset = ds.filter(lambda s: s in tiled, input_columns="source")
    rows = subset.remove_columns("image")
    teaser = {r["group"] for r in rows if "/teaser_r03_" in r["path"] or "/teaser_r05_" in r["path"]}
    assert teaser == {"attgan_pytorch_grids/pics/teaser.jpg"}
    gdwct = {(r["label"], r["group"]) for r in rows if r["source"] == "taki0112_gdwct"}
    assert gdwct == {(0, "taki0112_gdwct/assets/result.png"), (1, "taki0112_gdwct/assets/result.png")}
    pair = {r["group"] for r in rows if Path(r["path"]).stem in ("aged_ori1", "aged_tar1")}
    assert len(pair) == 1
    for seed in (0, 1, 2):
        splits = split_dataset(subset, seed=seed)
        sides = [set(splits[name]["group"]) for name in splits]
        assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])


