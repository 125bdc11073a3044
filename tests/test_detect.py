"""The detect CLI: rows per image, face and model; CSV and JSON; errors as rows; exit codes; 2 processes."""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, PngImagePlugin

from hub_utils.detect import main
from hub_utils.detector import load_detector
from hub_utils.ensemble import default_headline, default_sources, load_ensemble
from hub_utils.model_folder import ModelFolderError
from hub_utils.scoring import COLUMNS
from tests.conftest import REPO_ROOT, make_model_folder


@pytest.fixture(scope="module")
def image_tree(tmp_path_factory: pytest.TempPathFactory, astronaut: Image.Image) -> Path:
    root = tmp_path_factory.mktemp("images")
    (root / "nested").mkdir()
    astronaut.save(root / "astronaut.jpg")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 80, 3), dtype=np.uint8)).save(
        root / "nested" / "noise.png")
    (root / "nested" / "broken.jpg").write_bytes(b"\xff\xd8 broken")
    (root / "notes.txt").write_text("not an image and not collected from folders")
    return root


@pytest.fixture(scope="module")
def second_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_folder(tmp_path_factory.mktemp("models2") / "tiny-b", seed=1)


def test_csv_rows(image_tree: Path, model_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "out.csv"
    assert main([str(image_tree), "--model", str(model_dir), "--output", str(output)]) == 1  # broken.jpg
    rows = list(csv.DictReader(output.open()))
    assert list(rows[0]) == list(COLUMNS)
    by_file = {Path(r["path"]).name: r for r in rows}
    assert set(by_file) == {"astronaut.jpg", "noise.png", "broken.jpg"}
    assert by_file["astronaut.jpg"]["face"] == "1" and by_file["noise.png"]["face"] == "none"
    assert by_file["noise.png"]["box"] == "0,0,80,80"
    assert by_file["broken.jpg"]["error"] and by_file["broken.jpg"]["fake_probability"] == ""
    expected = load_detector(model_dir).predict([str(image_tree / "astronaut.jpg")])[0].fake_probability
    assert float(by_file["astronaut.jpg"]["fake_probability"]) == pytest.approx(expected, abs=1e-5)
    assert by_file["astronaut.jpg"]["verdict"] in ("real", "fake")


def test_json_with_two_models_and_ensemble(image_tree: Path, model_dir: Path, second_model: Path,
                                           tmp_path: Path) -> None:
    output = tmp_path / "out.json"
    assert main([str(image_tree / "astronaut.jpg"), "--model", str(model_dir), "--model", str(second_model),
                 "--ensemble", "--output", str(output)]) == 0
    rows = json.loads(output.read_text())
    probability = {r["model"]: r["fake_probability"] for r in rows}
    assert set(probability) == {"tiny-a", "tiny-b", "ensemble"}
    assert probability["ensemble"] == pytest.approx((probability["tiny-a"] + probability["tiny-b"]) / 2, abs=1e-5)
    assert [(r["model"], r["headline"]) for r in rows] == [("tiny-a", True), ("tiny-b", False), ("ensemble", False)]
    for row in rows:
        assert row["inconclusive"] == (abs(row["fake_probability"] - row["threshold"]) < 0.1)
        assert row["verdict"] == ("fake" if row["fake_probability"] >= row["threshold"] else "real")


def test_unreadable_inputs_are_said_on_stderr_and_exit_1(image_tree: Path, model_dir: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    """A missing path or a corrupt file is a row with its error, a line on stderr and exit status 1; the CSV's
    place is said; the progress bar counts images."""
    output = tmp_path / "out.csv"
    missing = tmp_path / "no-such-photo.jpg"
    args = [str(image_tree / "astronaut.jpg"), str(missing), str(image_tree / "nested"), "--model", str(model_dir)]
    assert main([*args, "--output", str(output)]) == 1
    err = capsys.readouterr().err
    assert f"error: {missing}:" in err and "broken.jpg" in err and "2 of 4 inputs could not be read" in err
    assert f"wrote 4 rows (4 images) to {output.resolve()}" in err
    assert "4/4" in err and "image" in err and "batch" not in err
    rows = {Path(r["path"]).name: r for r in csv.DictReader(output.open())}
    assert rows["no-such-photo.jpg"]["error"] and rows["astronaut.jpg"]["error"] == ""
    assert rows["no-such-photo.jpg"]["provenance_claim"] == "" and rows["astronaut.jpg"]["provenance_claim"] == "none"
    assert main([str(image_tree / "astronaut.jpg"), "--model", str(model_dir), "--output", str(output)]) == 0


def test_provenance_columns_sit_beside_the_score(astronaut: Image.Image, model_dir: Path, tmp_path: Path) -> None:
    """The file's declaration is in its rows, and its P(fake) is that of the same pixels without it."""
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a face\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Model: sdxl_base")
    astronaut.save(tmp_path / "declared.png", pnginfo=info)
    astronaut.save(tmp_path / "plain.png")
    output = tmp_path / "out.csv"
    assert main([str(tmp_path / "declared.png"), str(tmp_path / "plain.png"), "--model", str(model_dir),
                 "--output", str(output)]) == 0
    rows = {Path(r["path"]).name: r for r in csv.DictReader(output.open())}
    assert rows["declared.png"]["provenance_claim"] == "generated"
    assert rows["declared.png"]["provenance_tool"] == "Stable Diffusion WebUI"
    assert rows["declared.png"]["provenance_mechanism"] == "png-text"
    assert rows["plain.png"]["provenance_claim"] == "none"
    assert rows["declared.png"]["fake_probability"] == rows["plain.png"]["fake_probability"]


def test_usage_names_the_installed_command(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert out.startswith("usage: deepfake-detect ")


def test_usage_errors_exit_2(model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["x.jpg", "--model", str(tmp_path / "missing")]) == 2
    assert "no such model folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["x.jpg", "--model", str(model_dir), "--output", "out.txt"])
    assert exit_info.value.code == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where there is no CUDA device")
def test_cuda_and_bf16_are_refused_without_a_cuda_device(image_tree: Path, model_dir: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    for extra, message in ((["--device", "cuda"], "--device cuda: this process sees no CUDA device"),
                           (["--precision", "bf16"], "--precision bf16 runs on CUDA only")):
        with pytest.raises(SystemExit) as exit_info:
            main([str(image_tree), "--model", str(model_dir), *extra])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_a_folder_without_images_is_refused_before_loading_models(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "notes.txt").write_text("no pictures here")
    assert main([str(tmp_path), "--model", str(tmp_path / "missing")]) == 2
    assert "no image files (.avif, .bmp" in (err := capsys.readouterr().err) and str(tmp_path) in err


def test_output_folder_is_made_first_and_an_unwritable_one_fails_before_scoring(
        image_tree: Path, model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    output = tmp_path / "new" / "deeper" / "out.csv"
    assert main([str(image_tree / "astronaut.jpg"), "--model", str(model_dir), "--output", str(output)]) == 0
    assert [r["path"] for r in csv.DictReader(output.open())] == [str(image_tree / "astronaut.jpg")]
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main([str(image_tree), "--model", str(model_dir), "--output", str(blocker / "out.csv")]) == 2
    assert "cannot create the folder for --output" in capsys.readouterr().err


@pytest.mark.slow
def test_two_processes_give_the_same_output(image_tree: Path, model_dir: Path, tmp_path: Path) -> None:
    single, double = tmp_path / "one.json", tmp_path / "two.json"
    assert main([str(image_tree), "--model", str(model_dir), "--output", str(single)]) == 1  # broken.jpg
    done = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
         "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "hub_utils.detect", str(image_tree),
         "--model", str(model_dir), "--output", str(double)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "broken.jpg" in done.stderr, done.stderr[-3000:]
    one, two = json.loads(single.read_text()), json.loads(double.read_text())
    assert [r["path"] for r in one] == [r["path"] for r in two]
    for a, b in zip(one, two):
        assert (a["fake_probability"] == pytest.approx(b["fake_probability"], abs=1e-5)
                if a["fake_probability"] != "" else a == b)


def test_default_models_come_from_defaults_json(model_dir: Path, second_model: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    for folder in (model_dir, second_model):
        shutil.copytree(folder, models / folder.name)
    assert default_sources(models) == [str(models / model_dir.name), str(models / second_model.name)]
    assert default_headline(models) == model_dir.name
    (models / "defaults.json").write_text(json.dumps({"models": [second_model.name]}))
    assert default_sources(models) == [str(models / second_model.name)]
    assert [d.name for d in load_ensemble(default_sources(models)).detectors] == [second_model.name]
    (models / "defaults.json").write_text(json.dumps({"models": [model_dir.name, second_model.name],
                                                      "headline": second_model.name}))
    assert default_headline(models) == second_model.name
    (models / "defaults.json").write_text(json.dumps({"models": [model_dir.name], "headline": "tiny-z"}))
    with pytest.raises(ModelFolderError, match="'headline' must name one of its models"):
        default_headline(models)
    (models / "defaults.json").write_text('{"models": "oops"}')
    with pytest.raises(ModelFolderError, match="defaults.json"):
        default_sources(models)


def test_the_headline_of_defaults_json_leads_the_rows(image_tree: Path, model_dir: Path, second_model: Path,
                                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    models = tmp_path / "models"
    for folder in (model_dir, second_model):
        shutil.copytree(folder, models / folder.name)
    (models / "defaults.json").write_text(json.dumps({"models": [model_dir.name, second_model.name],
                                                      "headline": second_model.name}))
    monkeypatch.setattr("hub_utils.detect.default_sources", lambda: default_sources(models))
    monkeypatch.setattr("hub_utils.detect.default_headline", lambda: default_headline(models))
    output = tmp_path / "out.json"
    assert main([str(image_tree / "astronaut.jpg"), "--output", str(output)]) == 0
    rows = json.loads(output.read_text())
    assert [(r["model"], r["headline"]) for r in rows] == [(second_model.name, True), (model_dir.name, False)]
