"""The model folder contract: loads with our loader, timm `local-dir:` and transformers, with the same numbers."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import timm
import torch
from PIL import Image

from hub_utils import ModelFolderError, load_detector
from hub_utils.constants import LABEL_NAMES
from hub_utils.model_folder import RETIRED_DEEPFAKE_OPTIONS, load_model, read_config
from tests.conftest import make_model_folder


def test_config_layout(model_dir: Path) -> None:
    config = json.loads((model_dir / "config.json").read_text())
    assert config["architecture"] == "test_efficientnet"
    assert config["label_names"] == LABEL_NAMES and config["num_classes"] == 2
    assert "num_classes" not in config.get("model_args", {})
    assert config["pretrained_cfg"]["input_size"] == [3, 64, 64] and config["pretrained_cfg"]["crop_pct"] == 1.0
    assert set(config["deepfake"]) >= {"threshold", "preprocessing", "face_crop", "training_data", "metrics"}
    assert sorted(p.name for p in model_dir.iterdir()) == ["README.md", "config.json", "model.safetensors"]


def test_timm_and_transformers_agree_with_the_detector(model_dir: Path, astronaut: Image.Image) -> None:
    detector = load_detector(model_dir)
    region = detector.regions(astronaut)[0][0]
    ours = float(detector.score_regions([region])[0])
    model = timm.create_model(f"local-dir:{model_dir}", pretrained=True).eval()
    transform = timm.data.create_transform(**timm.data.resolve_data_config(model=model))
    with torch.no_grad():
        bare = model(transform(region).unsqueeze(0)).softmax(1)[0, 1].item()
    from transformers import pipeline

    scores = {r["label"]: r["score"] for r in pipeline("image-classification", model=str(model_dir))(region)}
    assert ours == pytest.approx(bare, abs=1e-5)
    assert scores["fake"] == pytest.approx(bare, abs=1e-4)
    assert 0.0 < ours < 1.0 and abs(ours - 0.5) > 1e-4  # a random head, not the zero-initialised one


def break_folder(folder: Path, how: str) -> None:
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    if how == "missing":
        shutil.rmtree(folder)
    elif how == "no_config":
        config_path.unlink()
    elif how == "malformed":
        config_path.write_text("{not json")
    elif how == "labels":
        config["label_names"] = ["fake", "real"]
        config_path.write_text(json.dumps(config))
    elif how == "pickle_only":
        torch.save({}, folder / "pytorch_model.bin")
        (folder / "model.safetensors").unlink()
    elif how == "wrong_weights":
        from safetensors.torch import save_file
        save_file({"x": torch.zeros(2)}, str(folder / "model.safetensors"))
    elif how == "bad_threshold":
        config["deepfake"]["threshold"] = 1.5
        config_path.write_text(json.dumps(config))
    elif how == "unknown_key":
        config["deepfake"]["tresholt"] = 0.3
        config_path.write_text(json.dumps(config))


@pytest.mark.parametrize("how, message", [
    ("missing", "no such model folder"),
    ("no_config", "no config.json"),
    ("malformed", "malformed JSON"),
    ("labels", "label_names must be exactly"),
    ("pickle_only", "pickle file, which is refused"),
    ("wrong_weights", "weights do not match"),
    ("bad_threshold", "threshold"),
    ("unknown_key", "unknown keys"),
])
def test_broken_folders_get_one_clear_message(tmp_path: Path, how: str, message: str) -> None:
    folder = make_model_folder(tmp_path / "m")
    break_folder(folder, how)
    with pytest.raises(ModelFolderError, match=message):
        load_detector(folder)


def test_offline_hub_id_with_empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ModelFolderError, match="cannot be reached"):
        load_detector("someone/no-such-detector@main")


def test_round_trip_keeps_weights(model_dir: Path, tmp_path: Path) -> None:
    from hub_utils.model_folder import save_model_folder

    model, config, deepfake = load_model(model_dir)
    copy = save_model_folder(model, tmp_path / "copy", deepfake)
    again, config_again, _ = load_model(copy)
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name
    assert read_config(copy)[0]["pretrained_cfg"] == config["pretrained_cfg"]


def test_a_folder_from_before_the_retired_options_loads_and_one_that_set_them_is_refused(tmp_path: Path) -> None:
    """Folders written before an option's retirement carry it: ignored at its old default; a folder
    that set one is refused by name, with the commit to check out to use it."""
    folder = make_model_folder(tmp_path / "old")
    config_path = folder / "config.json"
    config, current = json.loads(config_path.read_text()), read_config(folder)[1]
    (commit, retired), = RETIRED_DEEPFAKE_OPTIONS.items()
    config["deepfake"].update(retired)  # false / 0, as older folders hold them
    config_path.write_text(json.dumps(config))
    assert load_detector(folder).deepfake == current
    for name, value in (("npr", True), ("full_resolution_stem", True), ("kept_blocks", 3)):
        config_path.write_text(json.dumps({**config, "deepfake": {**config["deepfake"], name: value}}))
        with pytest.raises(ModelFolderError, match=f"'{name}' is {json.dumps(value)}.*check out commit {commit}"):
            load_detector(folder)
