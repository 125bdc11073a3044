"""The models embedded in `models/`: trained, complete, within the size limit, carded with measured numbers and the
data's non-commercial licence, and named by `models/defaults.json`."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from hub_utils import ModelFolderError, load_detector
from hub_utils.ensemble import DEFAULT_MODELS_DIR, default_headline, default_sources

SHIPPED = sorted(config.parent for config in DEFAULT_MODELS_DIR.glob("*/config.json"))
MAX_WEIGHT_BYTES = 25_000_000


def test_at_least_two_models_are_shipped_and_the_defaults_are_among_them() -> None:
    assert len(SHIPPED) >= 2
    defaults = [Path(source) for source in default_sources()]
    assert len(defaults) >= 2 and all(folder in SHIPPED for folder in defaults)
    record = json.loads((DEFAULT_MODELS_DIR / "defaults.json").read_text())
    assert default_headline() == defaults[0].name == "clip-vitb16-probe"
    scores = record["validation_balanced_accuracy"]
    assert scores[default_headline()] >= max(scores.values())  # the rule it states: no other choice scored higher


def test_the_frozen_clip_model_holds_its_head_only_and_names_its_backbone() -> None:
    folder = DEFAULT_MODELS_DIR / "clip-vitb16-probe"
    assert (folder / "model.safetensors").stat().st_size < 1_000_000
    backbone = json.loads((folder / "config.json").read_text())["deepfake"]["backbone"]
    from hub_utils.backbone_weights import CLIP_VIT_B16, PACKAGED

    assert backbone["weights_sha256"] == PACKAGED[CLIP_VIT_B16].weights_sha256
    card = (folder / "README.md").read_text()
    assert "MIT" in card and "forward_intermediates" in card and "margin" in card


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda folder: folder.name)
def test_shipped_model_is_trained_carded_and_scores_a_photo(folder: Path, astronaut: Image.Image) -> None:
    assert (folder / "model.safetensors").stat().st_size < MAX_WEIGHT_BYTES
    deepfake = json.loads((folder / "config.json").read_text())["deepfake"]
    assert deepfake["trained"] and deepfake["metrics"]["validation_neutral"]["balanced_accuracy"] > 0.85
    assert all("/" not in source for source in deepfake["training_data"]["sources"])  # names, not machine paths
    card = (folder / "README.md").read_text()
    assert "license: cc-by-nc-sa-4.0" in card and "non-commercial" in card and "name: test_neutral" in card
    try:
        detector = load_detector(folder)
    except ModelFolderError as error:
        pytest.skip(f"{folder.name}: {error}")  # a frozen backbone that is not cached here
    result = detector.predict([astronaut])[0]
    assert result.face_found and result.fake_probability < detector.threshold  # a real photograph


def python_block_after(card: str, marker: str) -> str:
    """The first ```python block of a card after `marker`."""
    return card.split(marker, 1)[1].split("```python\n", 1)[1].split("```", 1)[0]


def real_and_fake_photos(faces_dir: Path, each: int = 2) -> list[Path]:
    """The first `each` real and fake JPEGs of the shared face data, in a fixed order."""
    return [path for label in ("real", "fake") for path in sorted(faces_dir.glob(f"*/{label}/**/*.jpg"))[:each]]


@pytest.mark.parametrize("name", ["clip-vitb16-probe", "effnet-lite2-resize224-soup"])
def test_card_code_for_bare_timm_and_transformers_matches_load_detector(name: str, faces_dir: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The card's code for bare timm (and transformers, for a fine-tuned timm model), run as written on real and
    fake photos, gives the P(fake) of each face that `load_detector` gives, within 0.01."""
    folder = DEFAULT_MODELS_DIR / name
    try:
        detector = load_detector(folder)
    except ModelFolderError as error:
        pytest.skip(f"{name}: {error}")  # a frozen backbone that is not cached here
    (tmp_path / name).symlink_to(folder)
    if detector.deepfake.backbone is not None:
        from hub_utils.backbone_weights import cache_dir

        (tmp_path / "backbone.safetensors").symlink_to(cache_dir() / f"{detector.deepfake.backbone.weights_sha256}"
                                                                     ".safetensors")  # where load_detector found it
    code = python_block_after((folder / "README.md").read_text(), "Bare timm")
    parts = code.split("\nfrom transformers") if "from transformers" in code else [code]
    parts[1:] = ["from transformers" + part for part in parts[1:]]
    monkeypatch.chdir(tmp_path)
    for photo in real_and_fake_photos(faces_dir):
        (tmp_path / "face.jpg").write_bytes(photo.read_bytes())
        expected = [face.fake_probability for face in detector.predict(["face.jpg"])[0].faces]
        namespace: dict = {}
        for part in parts:  # the crops and timm, then transformers on the same crops
            exec(part, namespace)
            assert namespace["p_fake"].tolist() == pytest.approx(expected, abs=0.01), (photo.name, part[-80:])


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda folder: folder.name)
def test_grad_cam_shows_where_each_shipped_model_looked_for_either_verdict(folder: Path,
                                                                          astronaut: Image.Image) -> None:
    """The Detect tab's map follows the decision's logit margin: a map for either verdict, also for a head whose real
    logit is fixed at 0 (the frozen CLIP head). Only a model all but certain of its call (P >= 0.999: the retrained
    crop model gives this photo P(fake) 0.0005) may find nothing for the other verdict, as Grad-CAM should."""
    from hub_utils.explain import GradCamExplainer

    try:
        detector = load_detector(folder)
    except ModelFolderError as error:
        pytest.skip(f"{folder.name}: {error}")  # a frozen backbone that is not cached here
    region = detector.regions(astronaut)[0][0]
    p_fake = detector.predict([astronaut])[0].faces[0].fake_probability
    for verdict in ("real", "fake"):
        _, heat = GradCamExplainer(detector).heat_map(region, verdict)
        if heat.max() == 0.0 and max(p_fake, 1.0 - p_fake) >= 0.999:
            assert verdict == ("fake" if p_fake < 0.5 else "real")  # empty only against a certain call
            continue
        assert heat.max() > 0.5 and 0.0 < (heat > 0).mean() < 1.0, verdict
