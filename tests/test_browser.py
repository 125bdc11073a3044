"""The Space in a real browser, at a desktop and a phone width: headless Chromium (Debian's package) driven by
Playwright through every flow a person uses, with real files. Detect: no photo (a sentence for a person, gone on the
next tab), an upload scored twice, an example without a face. Batch: several images, then a zip; rows appear and the
CSV downloads and opens. Models and About: pictures load, no table breaks a word, the narrow table says it scrolls.
Screenshots are saved to tmp_path."""
from __future__ import annotations

import csv
import re
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from bench.load import start_app
from hub_utils.model_folder import DeepfakeConfig, save_model_folder
from training.backbone import create_backbone

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
EXAMPLES = Path(__file__).resolve().parents[1] / "space" / "examples"
ASTRONAUT = EXAMPLES / "astronaut.jpg"
NO_FACE = EXAMPLES / "synthetic_no_face.jpg"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which(CHROMIUM) is None,
                       reason=f"{CHROMIUM} is missing: install Debian's package with `apt-get install -y chromium`"),
]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """`python app.py` serving two tiny untrained models side by side; yields (url, upload folder)."""
    root = tmp_path_factory.mktemp("browser")
    folders = []
    for seed in (0, 1):
        model = create_backbone("test_efficientnet", "none", 64)
        with torch.no_grad():
            model.get_classifier().weight.normal_(generator=torch.Generator().manual_seed(seed))
        folders.append(str(save_model_folder(model, root / f"tiny-browser-{seed}", DeepfakeConfig(trained=False))))
    Image.new("RGB", (120, 90), (30, 90, 200)).save(Path(folders[0]) / "roc.png")  # a plot its card shows
    (Path(folders[0]) / "README.md").write_text("# tiny-browser-0\n\n![roc](roc.png)\n")
    app = start_app(folders, root / "uploads")
    yield app.url, root / "uploads"
    app.stop()


# the words of every table cell that a line break cuts (a hyphen may end a line; letters never split)
BROKEN_WORDS_JS = """selector => {
  const broken = [];
  for (const cell of document.querySelectorAll(selector)) {
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (const match of node.data.matchAll(/[^\\s-]+/g)) {
        const range = document.createRange();
        range.setStart(node, match.index);
        range.setEnd(node, match.index + match[0].length);
        if (new Set([...range.getClientRects()].map(r => Math.round(r.top))).size > 1) broken.push(match[0]);
      }
    }
  }
  return broken;
}"""
BROKEN_IMAGES_JS = "() => [...document.images].filter(i => i.complete && i.naturalWidth === 0).map(i => i.src)"


@pytest.fixture(scope="module")
def batch_files(tmp_path_factory) -> dict[str, list[Path]]:
    """Several image files, and a zip of two more (a PNG and a JPEG), as a person would pick them."""
    root = tmp_path_factory.mktemp("batch")
    images = [root / "astronaut.jpg", root / "no_face.jpg", root / "blue.png"]
    shutil.copy(ASTRONAUT, images[0])
    shutil.copy(NO_FACE, images[1])
    Image.new("RGB", (96, 96), (40, 60, 200)).save(images[2])
    archive = root / "photos.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.write(ASTRONAUT, "inside/astronaut_copy.jpg")
        bundle.write(images[2], "inside/blue_copy.png")
    return {"images": images, "zip": [archive]}


def check_detect(page, tmp_path: Path) -> None:
    """No photo, then the example face uploaded and scored twice, then the no-face example."""
    detect = page.get_by_role("button", name="Detect", exact=True)
    detect.click()  # nothing added yet: one sentence for a person, which goes when another tab opens
    toast = page.get_by_text("Add a photo first").first
    toast.wait_for(timeout=30_000)
    assert "handle_file" not in page.locator("body").inner_text()
    page.get_by_role("tab", name="About").click()
    toast.wait_for(state="detached", timeout=5_000)
    page.get_by_role("tab", name="Detect").click()

    page.locator("input[type=file]").first.set_input_files(str(ASTRONAUT))
    page.locator("img[src*='astronaut']").first.wait_for(timeout=30_000)  # the upload has landed
    detect.click()
    page.get_by_text("face 1: where the model looked").first.wait_for(timeout=90_000)
    page.screenshot(path=str(tmp_path / "detect.png"), full_page=True)
    cards = page.locator(".prose.model-verdict").filter(has_text="threshold")
    assert cards.count() == 2  # both models, side by side
    for card in cards.all():  # each card's verdict is the model's own call at its own threshold
        text = card.inner_text()
        probability, threshold = (float(v) for v in re.findall(r"(?:P\(fake\)|threshold) ([0-9.]+)%", text))
        verdict = re.search(r"\b(real|fake)\b", text.split("\n", 1)[1]).group(1)
        assert verdict == ("fake" if probability > threshold else "real") or probability == threshold
        assert "untrained" in text
    heading = page.locator("h2").filter(has_text=re.compile("Probably|Inconclusive"))
    assert heading.count() == 1
    verdict_text = heading.locator("xpath=..").inner_text()
    assert "P(fake)" in verdict_text and "threshold" in verdict_text and "confidence" not in verdict_text
    assert re.search(r"Of 2 models, \d (says?|is|are)", verdict_text)
    assert "What the file says about itself" in verdict_text and "says nothing either way" in verdict_text
    assert page.evaluate(BROKEN_IMAGES_JS) == []
    detect.click()  # the same photo again: its upload was deleted once answered, the session holds a copy
    page.wait_for_timeout(4_000)
    assert page.get_by_text("no longer on the server").count() == 0 and cards.count() == 2

    page.locator(".gallery-item, [data-testid=examples] button, table.examples-table tr").filter(
        has=page.locator("img[src*='synthetic_no_face']")).first.click()  # the example without a face
    page.locator("img[src*='synthetic_no_face']").first.wait_for(timeout=30_000)
    detect.click()
    page.locator("h2").filter(has_text="(no face found)").wait_for(timeout=90_000)
    assert page.get_by_text("whole picture was scored").count() >= 1


def score_batch(page, files: list[Path], tmp_path: Path, name: str) -> list[dict[str, str]]:
    """Choose `files` in the Batch tab, score them, download the CSV and return its rows."""
    chooser = page.locator("#batch-files input[type=file]")
    assert chooser.get_attribute("multiple") is not None  # the page's chooser takes several files
    chooser.set_input_files([str(f) for f in files])
    for file in files:
        page.locator(f"#batch-files [aria-label='{file.name}']").wait_for(timeout=30_000)
    page.get_by_role("button", name="Score all").click()
    link = page.locator("#batch-csv a[download='deepfake_scores.csv']")
    link.wait_for(timeout=120_000)
    with page.expect_download() as download_info:
        link.click()
    target = tmp_path / f"{name}.csv"
    download_info.value.save_as(target)
    page.screenshot(path=str(tmp_path / f"batch-{name}.png"), full_page=True)
    return list(csv.DictReader(target.open()))


def check_batch(page, batch_files: dict[str, list[Path]], tmp_path: Path) -> None:
    page.get_by_role("tab", name="Batch").click()
    table = page.locator(".batch-scores")
    table.wait_for(timeout=30_000)
    headers = [h.strip() for h in table.locator("thead th").all_inner_texts() if h.strip()]
    assert headers[:2] == ["file", "face"] and "verdict" in headers  # named columns before anything is scored

    rows = score_batch(page, batch_files["images"], tmp_path, "images")
    assert {row["file"] for row in rows} == {f.name for f in batch_files["images"]}
    assert {row["verdict"] for row in rows} <= {"real", "fake"}
    by_file = {row["file"]: row for row in rows}
    assert by_file["astronaut.jpg"]["face"] == "1" and by_file["blue.png"]["face"] == "whole image"
    assert table.locator("tbody tr").filter(has_text="astronaut.jpg").count() == 1  # the rows are on the page too

    rows = score_batch(page, batch_files["zip"], tmp_path, "zip")
    assert sorted(row["file"] for row in rows) == ["photos.zip/inside/astronaut_copy.jpg",
                                                   "photos.zip/inside/blue_copy.png"]
    assert table.locator("tbody tr").filter(has_text="astronaut_copy.jpg").count() == 1


def check_models_and_about(page, tmp_path: Path, width: int) -> None:
    page.get_by_role("tab", name="Models").click()
    comparison = page.locator(".model-comparison table")
    comparison.wait_for(timeout=30_000)
    assert comparison.locator("tbody tr").count() == 2
    assert "median of the last" in comparison.inner_text()  # photos were scored: the speed is theirs
    for accordion in page.get_by_role("button").filter(has_text="tiny-browser").all():
        accordion.click()
    page.locator("img[alt='roc']").wait_for(timeout=30_000)
    page.wait_for_timeout(1_000)
    page.screenshot(path=str(tmp_path / "models.png"), full_page=True)
    assert page.evaluate(BROKEN_IMAGES_JS) == []
    assert page.evaluate(BROKEN_WORDS_JS, ".model-comparison th, .model-comparison td") == []
    scrolls = comparison.evaluate("table => table.scrollWidth > table.clientWidth")
    assert scrolls == (width < 800)  # the phone's table scrolls sideways ...
    assert page.get_by_text("the table scrolls sideways").is_visible()  # ... and the page says so
    page.get_by_role("tab", name="About").click()
    page.wait_for_timeout(1_000)
    assert page.evaluate(BROKEN_IMAGES_JS) == []


@pytest.mark.parametrize("width", [1280, 390])
def test_every_flow_as_a_person_sees_it(app_url, batch_files, tmp_path, width):
    sync_api = pytest.importorskip("playwright.sync_api")
    url, uploads = app_url
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 1400}, accept_downloads=True)
            page.goto(url, wait_until="load")
            page.get_by_role("button", name="Detect", exact=True).wait_for(timeout=60_000)
            check_detect(page, tmp_path)
            check_batch(page, batch_files, tmp_path)
            check_models_and_about(page, tmp_path, width)
        finally:
            browser.close()
    assert (tmp_path / "detect.png").stat().st_size > 50_000
    images_left = [p for p in uploads.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp", ".zip"}]
    assert images_left == []
