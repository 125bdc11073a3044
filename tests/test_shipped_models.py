"""The models embedded in `models/`: trained, complete, within the size limit, carded with measured numbers and the
data's non-commercial licence, and named by `models/defaults.json`."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from hub_utils import load_detector
from hub_utils.ensemble import DEFAULT_MODELS_DIR, default_sources

SHIPPED = sorted(config.parent for config in DEFAULT_MODELS_DIR.glob("*/config.json"))
MAX_WEIGHT_BYTES = 25_000_000


def test_at_least_two_models_are_shipped_and_the_defaults_are_among_them() -> None:
    assert len(SHIPPED) >= 2
    defaults = [Path(source) for source in default_sources()]
    assert defaults and all(folder in SHIPPED for folder in defaults)


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda folder: folder.name)
def test_shipped_model_is_trained_carded_and_scores_a_photo(folder: Path, astronaut: Image.Image) -> None:
    assert (folder / "model.safetensors").stat().st_size < MAX_WEIGHT_BYTES
    deepfake = json.loads((folder / "config.json").read_text())["deepfake"]
    assert deepfake["trained"] and deepfake["metrics"]["validation_neutral"]["balanced_accuracy"] > 0.85
    card = (folder / "README.md").read_text()
    assert "license: cc-by-nc-sa-4.0" in card and "non-commercial" in card and "name: test_neutral" in card
    result = load_detector(folder).predict([astronaut])[0]
    assert result.face_found and 0.0 <= result.fake_probability <= 1.0
