"""The registry of model kinds (`hub_utils.kinds`): every kind's folder round-trips with identical scores, folders
written before `deepfake.kind` load as the kind they are, Grad-CAM reads the layer the kind names, a folder that
contradicts its kind is refused, and one step writes every kind's trained folder.

`MODELS` builds one small model per kind: a kind added to the registry without one here fails
`test_every_kind_is_built_here`."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import datasets
import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import load_file

from hub_utils import ModelFolderError, load_detector
from hub_utils.backbone_weights import weights_digest
from hub_utils.constants import BACKBONE_NAME, CONFIG_NAME, WEIGHTS_NAME
from hub_utils.detector import Detector
from hub_utils.explain import GradCamExplainer
from hub_utils.faces import FaceSettings
from hub_utils.feature_model import FrozenBackbone
from hub_utils.kinds import FINE_TUNED, FROZEN_HEAD, KINDS, kind_of
from hub_utils.model_folder import DeepfakeConfig, create_model, read_config, save_model_folder
from tests.conftest import REPO_ROOT, TINY_VIT
from training.backbone import create_backbone
from training.config import TrainConfig
from training.features import frozen_detector
from training.pipeline import Trained, write_trained_folder
from training.trainers import TRAINERS


@pytest.fixture(autouse=True)
def private_cache(private_backbone_cache: Path) -> None:
    """An empty backbone cache and no fetching: a frozen head's backbone comes from beside its folder."""


@pytest.fixture
def vit_weights(tiny_vit_weights: Path) -> Path:
    return tiny_vit_weights


def fine_tuned_model(vit_weights: Path) -> tuple[torch.nn.Module, DeepfakeConfig]:
    torch.manual_seed(0)
    model = create_backbone("test_efficientnet", "none", 64)
    torch.nn.init.normal_(model.get_classifier().weight, std=0.5)
    return model, DeepfakeConfig(kind=FINE_TUNED.name)


def frozen_head_model(vit_weights: Path) -> tuple[torch.nn.Module, DeepfakeConfig]:
    spec = FrozenBackbone(weights_digest(load_file(str(vit_weights))), (4, 12), "cls+patch")
    cfg = {**timm.models.get_pretrained_cfg(TINY_VIT).to_dict(), "crop_pct": 1.0}
    detector = frozen_detector(TINY_VIT, spec, FaceSettings(margin=0.5), cfg, str(vit_weights))
    torch.manual_seed(1)
    torch.nn.init.normal_(detector.model.head.weight, std=0.05)
    return detector.model, detector.deepfake


MODELS: dict[str, Callable[[Path], tuple[torch.nn.Module, DeepfakeConfig]]] = {
    FINE_TUNED.name: fine_tuned_model, FROZEN_HEAD.name: frozen_head_model}


def beside_folder(kind: str, folder: Path, vit_weights: Path) -> None:
    """The weights a kind's folder names but does not hold, put beside it (as `push --with-backbone` does)."""
    if not KINDS[kind].holds_all_weights:
        (folder / BACKBONE_NAME).write_bytes(vit_weights.read_bytes())


def saved(kind: str, folder: Path, vit_weights: Path) -> tuple[torch.nn.Module, Path]:
    model, deepfake = MODELS[kind](vit_weights)
    save_model_folder(model, folder, deepfake)
    beside_folder(kind, folder, vit_weights)
    return model, folder


def test_every_kind_is_built_here_and_trained_by_one_trainer() -> None:
    assert set(MODELS) == set(KINDS) == set(TRAINERS)


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_kind_round_trips_with_identical_scores(kind: str, vit_weights: Path, tmp_path: Path,
                                                     astronaut: Image.Image) -> None:
    model, folder = saved(kind, tmp_path / kind, vit_weights)
    config = json.loads((folder / CONFIG_NAME).read_text())
    assert config["deepfake"]["kind"] == kind == kind_of(model) == kind_of(config)
    stored = set(load_file(str(folder / WEIGHTS_NAME)))
    if KINDS[kind].holds_all_weights:
        assert stored == set(model.state_dict())
    else:
        assert stored < set(model.state_dict())  # the head alone
    loaded = load_detector(folder)
    assert loaded.deepfake.kind == kind == kind_of(loaded.model)
    original = Detector(model, config, DeepfakeConfig.from_dict(config["deepfake"]), "original",
                        face_finder=loaded.face_finder)
    ours, theirs = loaded.predict([astronaut])[0], original.predict([astronaut])[0]
    assert ours.fake_probability == theirs.fake_probability and abs(ours.fake_probability - 0.5) > 1e-4
    again = save_model_folder(loaded.model, tmp_path / "again", loaded.deepfake)
    assert json.loads((again / CONFIG_NAME).read_text())["deepfake"] == config["deepfake"]


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_folder_from_before_kinds_were_recorded_loads_as_the_kind_it_is(kind: str, vit_weights: Path,
                                                                           tmp_path: Path) -> None:
    _, folder = saved(kind, tmp_path / kind, vit_weights)
    config = json.loads((folder / CONFIG_NAME).read_text())
    del config["deepfake"]["kind"]
    (folder / CONFIG_NAME).write_text(json.dumps(config))
    assert kind_of(config) == read_config(folder)[1].kind == kind
    detector = load_detector(folder)
    assert detector.deepfake.kind == kind == kind_of(detector.model)


@pytest.mark.parametrize("folder", sorted(p for p in (REPO_ROOT / "models").iterdir() if p.is_dir()),
                         ids=lambda p: p.name)
def test_each_shipped_folder_is_read_as_the_kind_of_its_model(folder: Path) -> None:
    config, deepfake = read_config(folder)
    assert kind_of(create_model(config, deepfake)) == deepfake.kind == kind_of(config)


@pytest.mark.parametrize("kind", list(KINDS))
def test_grad_cam_reads_the_layer_its_kind_names(kind: str, vit_weights: Path, tmp_path: Path,
                                                 astronaut: Image.Image) -> None:
    _, folder = saved(kind, tmp_path / kind, vit_weights)
    detector = load_detector(folder)
    explainer = GradCamExplainer(detector)
    names = {module: name for name, module in detector.model.named_modules()}
    layer = names[KINDS[kind].gradcam_layer(detector.model)]
    assert explainer._layer is explainer._model.get_submodule(layer)  # on the explainer's private copy
    assert explainer._reshape is KINDS[kind].gradcam_reshape()
    [explanation] = explainer.explain(astronaut)
    assert np.asarray(explanation.looked, dtype=float).std() > 1.0


def edit_deepfake(folder: Path, **values: object) -> None:
    config = json.loads((folder / CONFIG_NAME).read_text())
    config["deepfake"].update(values)
    (folder / CONFIG_NAME).write_text(json.dumps(config))


@pytest.mark.parametrize(("kind", "values", "message"), [
    (FINE_TUNED.name, {"kind": "patch_head"}, "'patch_head', a kind of model this version.*fine_tuned, frozen_head"),
    (FROZEN_HEAD.name, {"kind": FINE_TUNED.name}, "'deepfake.backbone' belongs to the frozen_head kind"),
    (FROZEN_HEAD.name, {"backbone": None}, "frozen_head kind needs 'deepfake.backbone'"),
])
def test_a_folder_that_contradicts_its_kind_is_refused(kind: str, values: dict, message: str, vit_weights: Path,
                                                       tmp_path: Path) -> None:
    _, folder = saved(kind, tmp_path / kind, vit_weights)
    edit_deepfake(folder, **values)
    with pytest.raises(ModelFolderError, match=message):
        load_detector(folder)


def test_a_model_is_saved_only_with_a_config_of_its_kind(vit_weights: Path, tmp_path: Path) -> None:
    model, _ = frozen_head_model(vit_weights)
    with pytest.raises(ModelFolderError, match="of the frozen_head kind but its deepfake config says fine_tuned"):
        save_model_folder(model, tmp_path / "mixed", DeepfakeConfig())
    assert not (tmp_path / "mixed").exists()


def tiny_splits() -> datasets.DatasetDict:
    def split(names: list[str]) -> datasets.Dataset:
        return datasets.Dataset.from_dict({"path": [f"{name}.png" for name in names], "label": [0, 1],
                                           "generator": ["ffhq", "stylegan"]})
    return datasets.DatasetDict({"train": split(["r1", "f1"]), "validation": split(["r2", "f2"]),
                                 "test": split(["r3", "f3"])})


LOGS = {FINE_TUNED.name: [{"epoch": e, "train_loss": 0.7 / e, "val_raw_balanced_accuracy": 0.5,
                           "val_neutral_balanced_accuracy": 0.5, "val_neutral_roc_auc": 0.5} for e in (1, 2)],
        FROZEN_HEAD.name: [{"epoch": 1, "train_samples": 2, "train_accuracy": 1.0}]}


@pytest.mark.parametrize("kind", list(KINDS))
def test_one_step_writes_every_kind_of_trained_folder(kind: str, vit_weights: Path, tmp_path: Path) -> None:
    output = tmp_path / "run"
    (output / "checkpoint").mkdir(parents=True)
    (output / "checkpoint" / "state.pt").write_bytes(b"")
    model, deepfake = MODELS[kind](vit_weights)
    config = TrainConfig(kind=kind, data=[str(tmp_path / "faces")], output=str(output), pretrained="none")
    write_trained_folder(config, Trained(model, deepfake, tiny_splits(), LOGS[kind], {"image_size": 64}))
    names = {path.name for path in output.iterdir()}
    assert {CONFIG_NAME, WEIGHTS_NAME, "README.md", "train_config.json", "training_log.jsonl",
            "seen_images.json"} <= names and "checkpoint" not in names
    assert ("training_curves.png" in names) == (kind == FINE_TUNED.name)  # curves of a loss per epoch only
    assert TrainConfig.from_file(output / "train_config.json") == config
    log = [json.loads(line) for line in (output / "training_log.jsonl").read_text().splitlines()]
    assert log == LOGS[kind]
    training_data = read_config(output)[1].training_data
    assert training_data["sources"] == ["faces"] and training_data["image_size"] == 64
    assert json.loads((output / "seen_images.json").read_text())["trained"] == ["f1.png", "r1.png"]
    beside_folder(kind, output, vit_weights)
    assert load_detector(output).deepfake.kind == kind
