"""The Space in a real browser: headless Chromium (Debian's package) driven by Playwright uploads the example face,
clicks Detect, and the models' labels, verdict and pictures appear; a screenshot is saved to tmp_path."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch

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
    app = start_app(folders, root / "uploads")
    yield app.url, root / "uploads"
    app.stop()


def test_upload_detect_shows_each_models_own_verdict(app_url, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    url, uploads = app_url
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
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
            detect.click()  # the same photo again: its upload was deleted once answered, the session holds a copy
            page.wait_for_timeout(4_000)
            assert page.get_by_text("no longer on the server").count() == 0 and cards.count() == 2
            assert page.locator("h2").filter(has_text="Probably").or_(
                page.locator("h2").filter(has_text="Inconclusive")).count() == 1
        finally:
            browser.close()
    assert (tmp_path / "detect.png").stat().st_size > 50_000
    images_left = [p for p in uploads.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp"}]
    assert images_left == []
