"""Shared fixtures: a tiny model folder, real-face images from scikit-image, and the optional shared face data."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("DEEPFAKE_BACKBONE_NO_FETCH", "1")  # tests never download: `.ci/run` caches the CLIP tower first

REPO_ROOT = Path(__file__).resolve().parent.parent
FACES_DIR = REPO_ROOT.parent / "shared" / "data" / "faces"


def make_model_folder(folder: Path, seed: int = 0, image_size: int = 64,
                      card_text: str = "---\nlicense: apache-2.0\n---\n# test\n", **deepfake) -> Path:
    """A `test_efficientnet` model folder with a random (not zero) head, so scores vary between images."""
    from hub_utils.model_folder import DeepfakeConfig, save_model_folder
    from training.backbone import create_backbone

    torch.manual_seed(seed)
    model = create_backbone("test_efficientnet", "none", image_size)
    torch.nn.init.normal_(model.get_classifier().weight, std=0.5)
    return save_model_folder(model, folder, DeepfakeConfig(**deepfake), card_text=card_text)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_folder(tmp_path_factory.mktemp("models") / "tiny-a")


@pytest.fixture(scope="session")
def astronaut() -> Image.Image:
    """A real photograph with one face (public domain, shipped with scikit-image)."""
    from skimage import data

    return Image.fromarray(data.astronaut())


@pytest.fixture(scope="session")
def lfw_faces() -> list[Image.Image]:
    """Small real face crops from scikit-image's LFW subset (grey, 25x25 upscaled to 100x100)."""
    from skimage import data

    faces = data.lfw_subset()[:4]
    return [Image.fromarray((f * 255).astype(np.uint8)).resize((100, 100)) for f in faces]


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    if not FACES_DIR.is_dir():
        pytest.skip(f"real face data not found at {FACES_DIR} (see ../shared/data/README.md)")
    return FACES_DIR


TINY_VIT = "vit_tiny_patch16_224"  # a small ViT of the frozen backbone's family, random weights


@pytest.fixture(scope="session")
def tiny_vit_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `TINY_VIT` backbone's random weights as a safetensors file."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-vit") / "tiny_vit.safetensors"
    save_file(timm.create_model(TINY_VIT, pretrained=False, num_classes=0).state_dict(), str(path))
    return path


@pytest.fixture
def private_backbone_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty backbone cache, no fetching and no `DEEPFAKE_BACKBONE`: backbones come only from where a test puts
    them."""
    from hub_utils.backbone_weights import ENV_CACHE, ENV_NO_FETCH, ENV_SOURCE

    monkeypatch.setenv(ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.setenv(ENV_NO_FETCH, "1")
    monkeypatch.delenv(ENV_SOURCE, raising=False)
    return tmp_path / "cache"

