"""The Space in a real browser, at a desktop and a phone width: headless Chromium (Debian's package) driven by
Playwright uploads the example face, clicks Detect (twice), and each model's card, verdict and pictures appear; every
tab's pictures load and no table breaks a word; screenshots are saved to tmp_path."""
from __future__ import annotations

import re
import shutil
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
ASTRONAUT = Path(__file__).resolve().parents[1] / "space" / "examples" / "astronaut.jpg"

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


@pytest.mark.parametrize("width", [1280, 390])
def test_each_tab_as_a_person_sees_it(app_url, tmp_path, width):
    sync_api = pytest.importorskip("playwright.sync_api")
    url, uploads = app_url
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 1400})
            page.goto(url, wait_until="load")
            detect = page.get_by_role("button", name="Detect", exact=True)
            detect.wait_for(timeout=60_000)
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
            assert page.evaluate(BROKEN_IMAGES_JS) == []
            detect.click()  # the same photo again: its upload was deleted once answered, the session holds a copy
            page.wait_for_timeout(4_000)
            assert page.get_by_text("no longer on the server").count() == 0 and cards.count() == 2
            assert page.locator("h2").filter(has_text="Probably").or_(
                page.locator("h2").filter(has_text="Inconclusive")).count() == 1

            page.get_by_role("tab", name="Models").click()
            comparison = page.locator(".model-comparison table")
            comparison.wait_for(timeout=30_000)
            assert comparison.locator("tbody tr").count() == 2
            for accordion in page.get_by_role("button").filter(has_text="tiny-browser").all():
                accordion.click()
            page.locator("img[alt='roc']").wait_for(timeout=30_000)
            page.wait_for_timeout(1_000)
            page.screenshot(path=str(tmp_path / "models.png"), full_page=True)
            assert page.evaluate(BROKEN_IMAGES_JS) == []
            assert page.evaluate(BROKEN_WORDS_JS, ".model-comparison th, .model-comparison td") == []
            for tab in ("Batch", "About"):
                page.get_by_role("tab", name=tab).click()
                page.wait_for_timeout(1_000)
                assert page.evaluate(BROKEN_IMAGES_JS) == [], tab
        finally:
            browser.close()
    assert (tmp_path / "detect.png").stat().st_size > 50_000
    images_left = [p for p in uploads.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp"}]
    assert images_left == []
