"""Tests for training.data: every source layout, splits, problem scanning, and the describe and faces commands of
training.prepare."""

from __future__ import annotations

import io
import json
import zipfile
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from hub_utils.constants import LABEL_NAMES
from training import data, prepare
from training.data import FEATURES, DataError, load_source, split_dataset

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


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """`mysrc/<real|fake>/<generator>/...` with a duplicate, a near-duplicate, grid tiles, a corrupt and a tiny file."""
    root = tmp_path / "mysrc"
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
    assert data.processing_matched_sources(load_source(str(tmp_path))) == ["same"]


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


def test_scan_problems_and_drop(tree: Path):
    ds = load_source(str(tree))
    problems = {p["path"]: p["reason"] for p in data.scan_problems(ds)}
    assert problems["mysrc/fake/gan/broken.jpg"].startswith("undecodable")
    assert problems["mysrc/real/cam/tiny.png"].startswith("too small: 20x20")
    assert problems["mysrc/real/cam/r0.png"] == "duplicate of mysrc/real/cam/dup.png"
    assert len(problems) == 3
    assert len(data.drop_unusable(ds)) == len(ds) - 3


def synthetic_rows(n_per_stratum: int = 60) -> list[tuple[int, str, str]]:
    """(label, generator, name) of two real and two fake strata plus a 3-image stratum."""
    rows = []
    strata = [(0, "cam"), (0, "scan"), (1, "gan"), (1, "diffusion")]
    for label, generator in strata:
        rows += [(label, generator, f"{generator}{i}") for i in range(n_per_stratum)]
    rows += [(1, "rare", f"rare{i}") for i in range(3)]
    return rows


@pytest.fixture
def split_source(tmp_path: Path) -> datasets.Dataset:
    for seed, (label, generator, name) in enumerate(synthetic_rows()):
        write(tmp_path / "src" / LABEL_NAMES[label] / generator / f"{name}.png", smooth_image(seed))
    # near-duplicates: a re-encoded copy under another name, exact copies, and grid tiles of one row
    write(tmp_path / "src" / "real" / "cam" / "cam0_copy.jpg", smooth_image(0), quality=95)
    (tmp_path / "src" / "real" / "cam" / "cam1_same.png").write_bytes(
        (tmp_path / "src" / "real" / "cam" / "cam1.png").read_bytes()
    )
    for col in range(4):
        write(tmp_path / "src" / LABEL_NAMES[col > 0] / "grid" / f"fig_r01_c{col:02d}.png", smooth_image(1000 + col))
    return load_source(str(tmp_path / "src"))


def test_split_invariants(split_source: datasets.Dataset):
    splits = split_dataset(split_source, seed=0)
    assert list(splits) == ["train", "validation", "test"]
    assert sum(len(s) for s in splits.values()) == len(split_source) - 1  # one exact duplicate dropped
    for column in ("path", "group"):
        sides = [set(splits[name][column]) for name in splits]
        assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2]), column
    where = {path: name for name in splits for path in splits[name]["path"]}
    assert where["src/real/cam/cam0.png"] == where["src/real/cam/cam0_copy.jpg"]
    assert len({where[f"src/{LABEL_NAMES[c > 0]}/grid/fig_r01_c{c:02d}.png"] for c in range(4)}) == 1
    for generator in ("cam", "scan", "gan", "diffusion"):
        counts = Counter(name for name in splits for g in splits[name]["generator"] if g == generator)
        total = sum(counts.values())
        assert abs(counts["train"] - 0.8 * total) <= 2 and abs(counts["test"] - 0.1 * total) <= 2, (generator, counts)
    rare = [name for name in splits for g in splits[name]["generator"] if g == "rare"]
    assert len(rare) == 3 and rare.count("train") >= 1


def test_split_is_deterministic_and_seeded(split_source: datasets.Dataset):
    first = split_dataset(split_source, seed=3)
    again = split_dataset(split_source, seed=3)
    other = split_dataset(split_source, seed=4)
    assert all(first[name]["path"] == again[name]["path"] for name in first)
    assert any(first[name]["path"] != other[name]["path"] for name in first)


def test_split_rejects_bad_fractions(split_source: datasets.Dataset):
    with pytest.raises(DataError, match="fractions"):
        split_dataset(split_source, fractions=(0.9, 0.1))


def test_describe_cli(tree: Path, tmp_path: Path, capsys):
    output = tmp_path / "out" / "describe.json"
    prepare.main(["describe", str(tree), "--output", str(output), "--split-seed", "1"])
    report = json.loads(output.read_text())
    assert {"total", "skipped", "splits"} <= set(report)
    assert report["total"] == 19 and len(report["skipped"]) == 3
    assert set(report["splits"]) == {"train", "validation", "test"}
    assert sum(sum(c.values()) for c in report["splits"].values()) == 16
    assert "real/cam" in report["splits"]["train"]
    assert "label/generator" in capsys.readouterr().out


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
    rows = list(data.drop_unusable(load_source(str(root))))  # as training gets them
    faces = {Path(row["path"]).name: cached.find(image_of(row)) for row in rows}
    assert len(faces["astronaut.png"]) == 1 and faces["noise.png"] == []
    for row in rows:
        cached.find(neutral_reencode(image_of(row)))
