"""Tests for the Space: settings, uploads, the service and handlers without a server, then `python app.py` as a real
server in a subprocess, called through gradio_client."""
from __future__ import annotations

import io
import json
import re
import shutil
import time
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gradio as gr
import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image, PngImagePlugin

from bench.load import http_detect, start_app
from hub_utils.detector import load_detector
from hub_utils.images import ImageError
from space import render
from space.config import SpaceConfig, SpaceConfigError, load_space_config
from space.service import DetectorService, NoModelError
from space.ui import Handlers, build_demo
from space.uploads import NamedImage, UploadError, take_batch, take_upload
from tests.conftest import make_model_folder as make_shared_model_folder

REPO = Path(__file__).resolve().parents[1]
ASTRONAUT = REPO / "space" / "examples" / "astronaut.jpg"
NO_FACE = REPO / "space" / "examples" / "synthetic_no_face.jpg"
CARD = ("---\nlicense: cc-by-nc-sa-4.0\n---\n# Tiny test model\n\n"
        "| generator | accuracy |\n|---|---|\n| stylegan | 0.91 |\n")


def make_model_folder(folder: Path, seed: int, preprocessing: str = "resize", trained: bool = False) -> Path:
    """The shared tiny test model (random head, so scores vary) with a card that has a results table."""
    return make_shared_model_folder(folder, seed, preprocessing=preprocessing, trained=trained, card_text=CARD)


def image_bytes(image: Image.Image, fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def astronaut_variant(index: int) -> bytes:
    """The astronaut with one pixel changed: a different picture (and upload) with the same face."""
    pixels = np.asarray(Image.open(ASTRONAUT)).copy()
    pixels[0, index % pixels.shape[1]] = 255 - pixels[0, index % pixels.shape[1]]
    return image_bytes(Image.fromarray(pixels), "PNG")


def huge_png_header() -> bytes:
    """A 1x1 PNG whose header claims 20000x20000 pixels: refused before any pixel is decoded."""
    data = bytearray(image_bytes(Image.new("RGB", (1, 1)), "PNG"))
    data[16:24] = (20000).to_bytes(4, "big") * 2
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    return bytes(data)


@pytest.fixture(scope="module")
def model_folders(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("models")
    return [make_model_folder(root / "tiny-resize", 0), make_model_folder(root / "tiny-tile", 1, "tile")]


@pytest.fixture(scope="module")
def service(model_folders) -> DetectorService:
    return DetectorService.from_sources([str(f) for f in model_folders])


@pytest.fixture(scope="module", autouse=True)
def app_process(model_folders, tmp_path_factory):
    """`python app.py` with the test models, its own port and upload folder, started when the module starts, so
    that its start-up overlaps the tests without a server; yields (app, upload folder)."""
    temp_dir = tmp_path_factory.mktemp("gradio_uploads")
    app = start_app([str(f) for f in model_folders], temp_dir, wait=False)
    yield app, temp_dir
    app.stop()


@pytest.fixture
def upload_dir(tmp_path, monkeypatch) -> Path:
    """Gradio's upload folder for this test; files in it count as uploads."""
    folder = tmp_path / "gradio"
    folder.mkdir()
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(folder))
    return folder


def put_upload(upload_dir: Path, name: str, data: bytes) -> Path:
    path = upload_dir / f"hash{len(list(upload_dir.iterdir()))}" / name
    path.parent.mkdir()
    path.write_bytes(data)
    return path


# settings ---------------------------------------------------------------------------------------------------------

def test_settings_file_then_environment(tmp_path, monkeypatch):
    monkeypatch.setattr("space.config.REPO_ROOT", tmp_path)
    (tmp_path / "models" / "a").mkdir(parents=True)
    settings = tmp_path / "models.json"
    settings.write_text(json.dumps({"models": ["models/a", "owner/name@v1"], "max_batch_files": 5}))
    config = load_space_config(settings, environ={})
    assert config.models == [str(tmp_path / "models" / "a"), "owner/name@v1"] and config.max_batch_files == 5
    config = load_space_config(settings, environ={"DEEPFAKE_MODELS": "/abs/x, owner/y "})
    assert config.models == ["/abs/x", "owner/y"] and config.max_batch_files == 5


def test_settings_refuse_unknown_keys(tmp_path):
    settings = tmp_path / "models.json"
    settings.write_text(json.dumps({"modles": ["a"]}))
    with pytest.raises(SpaceConfigError, match="unknown settings modles"):
        load_space_config(settings, environ={})


# uploads ----------------------------------------------------------------------------------------------------------

def test_upload_is_deleted_after_reading_but_examples_stay(upload_dir):
    path = put_upload(upload_dir, "face.jpg", b"abc")
    assert take_upload(path) == b"abc"
    assert not path.exists() and not path.parent.exists()
    assert take_upload(ASTRONAUT) == ASTRONAUT.read_bytes() and ASTRONAUT.exists()
    with pytest.raises(UploadError, match="no longer on the server"):
        take_upload(path)


def test_batch_expands_zips_and_enforces_limits(upload_dir):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("faces/a.jpg", ASTRONAUT.read_bytes())
        bundle.writestr("faces/.hidden", b"x")
        bundle.writestr("notes.txt", b"not an image")
    paths = [put_upload(upload_dir, "set.zip", archive.getvalue()), put_upload(upload_dir, "b.jpg", b"jpeg")]
    images = take_batch(paths, max_files=3, max_file_bytes=10**6, max_total_bytes=10**6)
    assert [i.name for i in images] == ["set.zip/faces/a.jpg", "set.zip/notes.txt", "b.jpg"]
    assert not any(p.exists() for p in paths)
    too_many = [put_upload(upload_dir, f"{i}.jpg", b"x") for i in range(3)]
    with pytest.raises(UploadError, match="at most 2 images"):
        take_batch(too_many, max_files=2, max_file_bytes=10**6, max_total_bytes=10**6)
    assert not any(p.exists() for p in too_many)
    with pytest.raises(UploadError, match="not a readable zip"):
        take_batch([put_upload(upload_dir, "bad.zip", b"PK no zip")], 5, 10**6, 10**6)


# service and handlers without a server ------------------------------------------------------------------------------

def test_detect_reports_each_model_as_its_detector_scores(service, model_folders):
    result = service.detect(ASTRONAUT.read_bytes(), "astronaut.jpg")
    assert set(result) == {"headline", "verdict", "fake_probability", "threshold", "inconclusive", "agreeing",
                           "face_found", "faces", "models", "provenance"}
    assert result["provenance"]["claim"] == "none" and "says nothing either way" in result["provenance"]["sentence"]
    assert result["face_found"] and len(result["faces"]) == 1
    x0, y0, x1, y1 = result["faces"][0]["box"]
    assert 150 < x0 < x1 < 300 and 30 < y0 < y1 < 200  # the astronaut's face in the 512x512 picture
    own = {f.name: load_detector(f).predict([ASTRONAUT])[0].fake_probability for f in model_folders}
    assert {n: m["fake_probability"] for n, m in result["models"].items()} == pytest.approx(own, abs=1e-6)
    assert result["headline"] == "tiny-resize" and result["fake_probability"] == pytest.approx(own["tiny-resize"])
    assert result["verdict"] == ("fake" if result["fake_probability"] >= result["threshold"] else "real")
    assert result["agreeing"] == sum(m["verdict"] == result["verdict"] and not m["inconclusive"]
                                     for m in result["models"].values())
    assert [face["face"] for face in result["faces"]] == [1]  # faces are numbered from 1, as on the page
    assert all(m["revision"] == "local" and m["threshold"] == 0.5 and not m["trained"]
               and m["inconclusive"] == (abs(m["fake_probability"] - 0.5) < 0.1) for m in result["models"].values())


def test_the_headline_is_the_named_model_or_the_models_mean(model_folders):
    sources = [str(f) for f in model_folders]
    own = {f.name: load_detector(f).predict([ASTRONAUT])[0].fake_probability for f in model_folders}
    second = DetectorService.from_sources(sources, headline="tiny-tile").detect(ASTRONAUT.read_bytes())
    assert second["headline"] == "tiny-tile" and second["fake_probability"] == pytest.approx(own["tiny-tile"])
    mean = DetectorService.from_sources(sources, headline="ensemble").detect(ASTRONAUT.read_bytes())
    assert mean["fake_probability"] == pytest.approx(np.mean(list(own.values())), abs=1e-6)
    unknown = DetectorService.from_sources(sources, headline="not-loaded")
    assert unknown.headline == "tiny-resize"


def test_detect_without_face_scores_the_whole_image(service):
    result = service.detect(NO_FACE.read_bytes(), "pattern.jpg")
    assert not result["face_found"] and result["faces"] == []
    assert 0.0 <= result["fake_probability"] <= 1.0


def test_bad_images_raise_readable_errors(service):
    for data, message in [(b"hello", "not an image"), (ASTRONAUT.read_bytes()[:3000], "truncated"),
                          (image_bytes(Image.new("RGB", (8, 8)), "PNG"), "at least 32 px"),
                          (huge_png_header(), "too many pixels")]:
        with pytest.raises(ImageError, match=message):
            service.detect(data, "upload")


def test_no_model_installed_still_builds_and_says_so(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    bad_card = make_model_folder(tmp_path / "bad-card", 0)
    (bad_card / "README.md").write_text("---\nlicense: [unclosed\n---\n# x\n")
    service = DetectorService.from_sources([str(broken), str(bad_card)])
    assert sum("could not be loaded" in n for n in service.notices()) == 2
    assert any("No detection model is installed" in n for n in service.notices())
    with pytest.raises(NoModelError):
        service.detect(ASTRONAUT.read_bytes())
    assert isinstance(build_demo(service, SpaceConfig(models=[])), gr.Blocks)


def test_handlers_turn_errors_into_sentences_and_delete_uploads(service, upload_dir):
    handlers = Handlers(service, SpaceConfig(models=[]))
    bad = put_upload(upload_dir, "notes.jpg", b"plain text")
    with pytest.raises(gr.Error, match="not an image file"):
        handlers.detect({"path": str(bad), "orig_name": "notes.jpg"})
    assert not bad.exists()
    with pytest.raises(gr.Error, match="Add a photo first") as person:
        handlers.detect(None)
    assert "handle_file" not in person.value.message  # the page's visitor gets a sentence for a person
    with pytest.raises(gr.Error, match="handle_file"):  # an API payload that is not a file: how to send one
        handlers.detect({})
    with pytest.raises(gr.Error, match="Choose some images") as person:
        handlers.detect_batch(None)
    assert "handle_file" not in person.value.message
    with pytest.raises(gr.Error, match="handle_file"):
        handlers.detect_batch([])
    assert handlers.clear_results() == ["", "", None, "", "", "", ""]


def test_detect_again_on_the_same_photo_uses_the_held_copy_once_the_upload_is_gone(service, upload_dir):
    handlers = Handlers(service, SpaceConfig(models=[]))
    upload = {"path": str(put_upload(upload_dir, "a.jpg", ASTRONAUT.read_bytes())), "orig_name": "a.jpg"}
    first, _, held = handlers.detect(upload)
    assert not Path(upload["path"]).exists()  # the uploaded file left the temp folder once answered
    again, data, held_again = handlers.detect(upload, held)
    assert again == first and data == ASTRONAUT.read_bytes() and held_again == held
    with pytest.raises(gr.Error, match="no longer on the server"):  # another photo's copy is never used
        handlers.detect({"path": str(upload_dir / "other.jpg")}, held)


def test_pictures_are_inline_and_never_written_to_disk(service, upload_dir):
    handlers = Handlers(service, SpaceConfig(models=[]))
    result, data, _ = handlers.detect({"path": str(put_upload(upload_dir, "a.jpg", ASTRONAUT.read_bytes()))})
    verdict, faces, *rest = handlers.pictures(data, result)
    cards, views, cleared = rest[:2], rest[2:4], rest[4]
    assert "## " in verdict and "Untrained models" in verdict and cleared is None
    assert re.search(r"Of 2 models, .*(says|say|inconclusive)", verdict) and "`tiny-resize` gives P(fake)" in verdict
    assert "confidence" not in verdict
    for card, (name, model) in zip(cards, result["models"].items()):
        assert card.startswith(f"#### {name}") and f"**{model['verdict']}**" in card
        assert f"P(fake) {model['fake_probability']:.1%}" in card and "threshold 50.0%" in card
    assert "(headline)" in cards[0] and "(headline)" not in cards[1]
    assert faces.count("data:image/jpeg;base64,") == 1
    assert all(v.count("<figure") == 2 and "face 1: where the model looked" in v and "face 1: frequency spectrum" in v
               for v in views)
    assert [p for p in upload_dir.rglob("*") if p.is_file()] == []


def verdict_result(**changes) -> dict:
    """A /detect result of two trained models, the headline calling real at 10%."""
    models = {"m": {"trained": True, "fake_probability": 0.1, "verdict": "real", "inconclusive": False},
              "n": {"trained": True, "fake_probability": 0.45, "verdict": "real", "inconclusive": True}}
    return {"headline": "m", "verdict": "real", "fake_probability": 0.1, "threshold": 0.5, "inconclusive": False,
            "agreeing": 1, "face_found": True, "faces": [{"face": 1}], "models": models, **changes}


def test_verdict_says_what_the_number_is_and_how_the_models_split():
    text = render.verdict_markdown(verdict_result())
    first = text.split("\n\n")
    assert first[0] == "## Probably real" and "`m` gives P(fake) 10.0%, below its threshold of 50.0%" in first[1]
    assert "confidence" not in text and "Of 2 models, 1 says real and 1 is inconclusive." in text
    opposite = verdict_result(models={**verdict_result()["models"],
                                      "n": {"trained": True, "fake_probability": 0.9, "verdict": "fake",
                                            "inconclusive": False}})
    assert "Of 2 models, 1 says real and 1 says fake." in render.verdict_markdown(opposite)
    fake = verdict_result(verdict="fake", fake_probability=0.93, models={
        name: {"trained": True, "fake_probability": 0.93, "verdict": "fake", "inconclusive": False} for name in "mn"})
    assert "at or above its threshold" in render.verdict_markdown(fake)
    assert "Of 2 models, 2 say fake." in render.verdict_markdown(fake)


def test_verdict_carries_the_no_face_caveat_in_its_heading():
    text = render.verdict_markdown(verdict_result(face_found=False, faces=[], inconclusive=True,
                                                  fake_probability=0.45))
    heading, sentence = text.split("\n\n")[:2]
    assert heading == "## Inconclusive (no face found), leaning real"
    assert "too close to its threshold of 50.0% to call" in sentence and "whole picture was scored" in sentence
    assert "Untrained" not in text
    decided = render.verdict_markdown(verdict_result(face_found=False, faces=[]))
    assert decided.startswith("## Probably real (no face found)") and "weak evidence" in decided.split("\n\n")[1]


def test_models_metadata_and_card(service):
    metadata = service.models()
    assert [m["name"] for m in metadata["models"]] == ["tiny-resize", "tiny-tile"]
    page = render.model_markdown(metadata["models"][0])
    assert "**Decision threshold**: P(fake) ≥ 0.500" in page and "cc-by-nc-sa-4.0" in page
    assert "| stylegan | 0.91 |" in page and "license:" not in page and "untrained" in page
    assert "**Input**: face, margin 0.25, 64 px" in page and "mirror" not in page and "{" not in page
    assert metadata["models"][0]["kind"] == "fine_tuned" and "**Backbone**: `test_efficientnet`, fine-tuned" in page
    switched = render.model_markdown({**metadata["models"][0], "test_time_flip": True})
    assert "64 px, and its mirror image" in switched


def test_models_tab_compares_the_models_and_shows_their_plots(model_folders, tmp_path):
    """One comparison row per model from its folder's files (size, test report, leave-one-out record, speed measured
    here); card pictures inline from the folder, links to missing pictures dropped."""
    folder = tmp_path / "measured"
    shutil.copytree(model_folders[0], folder)
    (folder / "evaluation.json").write_text(json.dumps({"setting": "neutral", "split": "test", "n": 40,
                                                        "balanced_accuracy": 0.9, "roc_auc": 0.95,
                                                        "per_class": {"real": {"recall": 0.85}}}))
    (folder / "leave_one_out.json").write_text(json.dumps({"recipe": "tiny", "measured_by": "test",
                                                           "threshold": "0.5", "results": [
        {"left_out": "stylegan", "kind": "generators", "roc_auc": 0.8, "balanced_accuracy": 0.7, "recall": 0.5},
        {"left_out": "diffusion", "kind": "generators", "roc_auc": 0.6, "balanced_accuracy": 0.55, "recall": 0.2}]}))
    Image.new("RGB", (40, 30), (200, 0, 0)).save(folder / "roc.png")
    card = (folder / "README.md").read_text() + "\n![roc](roc.png)\n![gone](missing.png)\n"
    (folder / "README.md").write_text(card)
    service = DetectorService.from_sources([str(folder), str(model_folders[1])])
    models = service.models()["models"]
    assert all(m["speed"]["ms_per_face"] > 0 and m["speed"]["basis"] == "start-up" for m in models)
    table = render.comparison_markdown(models).splitlines()
    assert len(table) == 4 and "0.900 / 0.950 / 0.850 (40 test images of 0 sources, neutral)" in table[2]
    assert "timed at start-up, no photo scored yet" in table[2]
    service.detect(ASTRONAUT.read_bytes())  # from now on, the speed shown is the one of photos served
    served = service.models()["models"]
    assert all(m["speed"]["basis"] == "served" and m["speed"]["images"] == 1 for m in served)
    assert "(median of the last 1 images scored)" in render.comparison_markdown(served)
    assert "diffusion (generators): 0.550" in table[2] and table[3].count("not measured") == 2
    assert f"{(folder / 'model.safetensors').stat().st_size / 2**20:.2f} MB" in table[2]
    page = render.model_markdown(models[0], service.plot_files(models[0]["name"]))
    assert "![roc](data:image/png;base64," in page and "missing.png" not in page and "gone" not in page


# the real server --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(app_process) -> tuple[str, Path]:
    """The running app's (url, upload folder)."""
    app, temp_dir = app_process
    app.wait_until_up()
    return app.url, temp_dir


@pytest.fixture
def client(server, tmp_path) -> Client:
    return Client(server[0], verbose=False, download_files=str(tmp_path))


def test_server_lists_named_endpoints_only(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert set(endpoints) == {"/detect", "/detect_batch", "/models"}
    assert [r["component"] for r in endpoints["/detect"]["returns"]] == ["Json"]  # the pictures are not in the API


def webui_png(pixels: Image.Image) -> bytes:
    """`pixels` as a PNG whose text chunk declares Stable Diffusion WebUI made it (as the WebUI writes it)."""
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a portrait\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, "
                                "Model: v1-5-pruned-emaonly")
    buffer = io.BytesIO()
    pixels.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def test_provenance_is_shown_beside_the_score_and_never_moves_it(service, upload_dir):
    """A file that declares its generator: the declaration comes back in /detect, the verdict's words and the
    batch rows, and every P(fake) equals that of the same pixels without it."""
    pixels = Image.open(ASTRONAUT).convert("RGB")
    plain, declared = io.BytesIO(), webui_png(pixels)
    pixels.save(plain, format="PNG")
    bare, claimed = service.detect(plain.getvalue()), service.detect(declared)
    assert bare["provenance"]["claim"] == "none"
    assert claimed["provenance"]["claim"] == "generated" and claimed["provenance"]["mechanism"] == "png-text"
    assert "Stable Diffusion WebUI" in claimed["provenance"]["sentence"]
    assert {k: v for k, v in claimed.items() if k != "provenance"} == {k: v for k, v in bare.items()
                                                                         if k != "provenance"}
    words = render.verdict_markdown(claimed)
    assert words.split("\n\n")[-1].startswith("**What the file says about itself**")
    assert claimed["provenance"]["sentence"] in words
    columns, rows = service.detect_batch([NamedImage("declared.png", declared), NamedImage("plain.png",
                                                                                           plain.getvalue())])
    by_file = {row[0]: dict(zip(columns, row)) for row in rows}
    assert by_file["declared.png"]["provenance_claim"] == "generated"
    assert by_file["declared.png"]["provenance_tool"] == "Stable Diffusion WebUI"
    assert by_file["plain.png"]["provenance_claim"] == "none"
    scores = [c for c in columns if c in {d.name for d in service.detectors}]
    assert [by_file["declared.png"][c] for c in scores] == [by_file["plain.png"][c] for c in scores]


def test_detect_over_http_matches_the_service(client, service):
    result = client.predict(handle_file(str(ASTRONAUT)), api_name="/detect")
    expected = service.detect(ASTRONAUT.read_bytes())
    assert result["fake_probability"] == pytest.approx(expected["fake_probability"], abs=1e-6)
    assert {n: m["fake_probability"] for n, m in result["models"].items()} == pytest.approx(
        {n: m["fake_probability"] for n, m in expected["models"].items()}, abs=1e-6)
    assert result["faces"][0]["box"] == expected["faces"][0]["box"] and result["verdict"] == expected["verdict"]
    assert result["provenance"] == expected["provenance"]


def test_plain_http_api_gives_the_gradio_client_result(server, client):
    url, temp_dir = server
    with httpx.Client(timeout=60) as http:
        result = http_detect(http, url, ASTRONAUT)
    assert result == client.predict(handle_file(str(ASTRONAUT)), api_name="/detect")
    assert not [p for p in Path(temp_dir).rglob("astronaut.jpg") if p.is_file()]


def test_bad_call_then_good_call(client, tmp_path):
    cases = [("notes.jpg", b"hello", "not an image file"),
             ("cut.jpg", ASTRONAUT.read_bytes()[:3000], "truncated or corrupt"),
             ("tiny.png", image_bytes(Image.new("RGB", (8, 8)), "PNG"), "at least 32 px"),
             ("huge.png", huge_png_header(), "too many pixels")]
    for name, data, message in cases:
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(AppError, match=message):
            client.predict(handle_file(str(path)), api_name="/detect")
    with pytest.raises(AppError, match="send files, not text"):
        client.predict(str(ASTRONAUT), api_name="/detect")  # a path string, not handle_file(path)
    with pytest.raises(AppError, match="send files, not text"):
        client.predict("face.jpg", api_name="/detect_batch")
    assert client.predict(handle_file(str(ASTRONAUT)), api_name="/detect")["verdict"] in {"real", "fake"}


def test_no_image_file_remains_after_detect_calls(server, tmp_path):
    url, temp_dir = server
    paths = []
    for index in range(4):
        paths.append(tmp_path / f"variant_{index}.png")
        paths[-1].write_bytes(astronaut_variant(index))
    clients = [Client(url, verbose=False, download_files=str(tmp_path / "downloads")) for _ in range(2)]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda i: clients[i % 2].predict(handle_file(str(paths[i])), api_name="/detect"),
                                range(len(paths))))
    assert all(r["face_found"] for r in results)
    left = [p for p in Path(temp_dir).rglob("*") if p.is_file() and p.suffix.lower() in {".png", ".jpg", ".jpeg",
                                                                                          ".webp"}]
    assert left == []


@pytest.mark.slow
def test_uploads_never_sent_and_csv_downloads_leave_after_the_set_time(model_folders, tmp_path):
    """An upload that never reaches Detect and the batch tab's CSV are deleted by the server after
    `temp_file_seconds` (a settings file that DEEPFAKE_SETTINGS names sets it to 2 s here)."""
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"temp_file_seconds": 2}))
    temp_dir = tmp_path / "uploads"
    app = start_app([str(model_folders[0])], temp_dir, settings=settings)
    try:
        with httpx.Client(timeout=60) as http:
            response = http.post(app.url + "gradio_api/upload",
                                 files={"files": ("never_sent.jpg", ASTRONAUT.read_bytes(), "image/jpeg")})
        never_sent = Path(response.json()[0])
        client = Client(app.url, verbose=False, download_files=str(tmp_path / "downloads"))
        table, downloaded = client.predict([handle_file(str(ASTRONAUT))], api_name="/detect_batch")
        csv_files = list(temp_dir.rglob("*.csv"))
        assert never_sent.is_file() and csv_files and Path(downloaded).read_text().startswith("file,face")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(p.exists() for p in [never_sent, *csv_files]):
            time.sleep(0.5)
        assert [p for p in [never_sent, *csv_files] if p.exists()] == []
    finally:
        app.stop()


def test_batch_and_models_over_http(client, tmp_path):
    archive = tmp_path / "set.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("x/astronaut.jpg", ASTRONAUT.read_bytes())
        bundle.writestr("x/broken.jpg", b"nope")
    files = [handle_file(str(ASTRONAUT)), handle_file(str(NO_FACE)), handle_file(str(archive))]
    table, csv_path = client.predict(files, api_name="/detect_batch")
    provenance = ["provenance_claim", "provenance_tool", "provenance_mechanism", "provenance_signature_valid",
                  "provenance_bound_to_bytes"]
    assert table["headers"] == ["file", "face", "tiny-resize", "tiny-tile", "verdict", "note", *provenance]
    rows = {(row[0], row[1]): row for row in table["data"]}
    assert set(rows) == {("astronaut.jpg", 1), ("synthetic_no_face.jpg", "whole image"), ("set.zip/x/astronaut.jpg", 1),
                         ("set.zip/x/broken.jpg", "")}
    assert rows[("astronaut.jpg", 1)][2:5] == rows[("set.zip/x/astronaut.jpg", 1)][2:5]
    assert rows[("set.zip/x/broken.jpg", "")][4] == "error"
    assert Path(csv_path).read_text().splitlines()[0] == ",".join(table["headers"])
    assert rows[("astronaut.jpg", 1)][6] == "none"  # the example photo declares nothing
    metadata = client.predict(api_name="/models")
    assert [m["threshold"] for m in metadata["models"]] == [0.5, 0.5] and metadata["ensemble"]["threshold"] == 0.5
    assert metadata["headline"] == "tiny-resize"
    assert any("untrained" in notice for notice in metadata["notices"])
