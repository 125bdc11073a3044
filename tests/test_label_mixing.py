"""Mixup and CutMix in training: labels are mixed exactly as the pixels are, and an epoch trains on mixed faces."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from hub_utils.model_folder import FAKE_INDEX
from tests.test_train import run_training, train_an_epoch, write_config, write_generated_tree
from training.backbone import create_backbone
from training.config import TrainConfig
from training.train import label_mixing


def two_tone_faces(n: int = 16, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Black reals and white fakes, so an image's mean pixel is the share of fake in it."""
    labels = torch.arange(n) % 2
    images = (labels == FAKE_INDEX).float().view(n, 1, 1, 1).expand(n, 3, size, size).clone()
    return images, labels


@pytest.mark.parametrize("alphas", [{"mixup_alpha": 0.4}, {"cutmix_alpha": 1.0}, {"mixup_alpha": 0.2, "cutmix_alpha": 1.0}])
def test_each_mixed_face_is_labelled_by_its_share_of_fake(alphas: dict[str, float]) -> None:
    mixing = label_mixing(TrainConfig(**alphas))
    for seed in range(10):  # timm draws the mixing with numpy
        np.random.seed(seed)
        images, labels = two_tone_faces()
        mixed, targets = mixing(images, labels)
        assert targets.shape == (len(labels), 2)
        torch.testing.assert_close(targets.sum(dim=1), torch.ones(len(labels)))
        torch.testing.assert_close(targets[:, FAKE_INDEX], mixed.mean(dim=(1, 2, 3)), atol=1e-5, rtol=0)


def test_no_alpha_no_mixing() -> None:
    assert label_mixing(TrainConfig()) is None


def test_an_epoch_trains_on_mixed_faces() -> None:
    def input_means(config: TrainConfig) -> torch.Tensor:
        model = create_backbone("test_efficientnet", "none", 32)
        means = []
        model.register_forward_hook(lambda module, args, output: means.append(args[0].mean(dim=(1, 2, 3))))
        train_an_epoch(model, DataLoader(TensorDataset(*two_tone_faces(32)), batch_size=8), config)
        return torch.cat(means)

    plain = input_means(TrainConfig(batch_size=8, channels_last=False))
    assert set(plain.tolist()) == {0.0, 1.0}
    mixed = input_means(TrainConfig(batch_size=8, channels_last=False, cutmix_alpha=1.0))
    assert ((mixed > 0.01) & (mixed < 0.99)).any()


def test_training_with_mixup_and_cutmix_writes_a_model_folder(tmp_path: Path) -> None:
    generated = write_generated_tree(tmp_path / "generated", per_class=16)
    output = tmp_path / "run"
    config = write_config(tmp_path / "config.json", [str(generated)], output, tmp_path / "faces", epochs=1)
    done = run_training(config, "--mixup", "0.2", "--cutmix", "1.0")
    assert done.returncode == 0, done.stderr[-3000:]
    recorded = json.loads((output / "train_config.json").read_text())
    assert (recorded["mixup_alpha"], recorded["cutmix_alpha"]) == (0.2, 1.0)
    assert (output / "model.safetensors").is_file()


def test_an_odd_batch_is_refused_before_training(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.json", [str(tmp_path)], tmp_path / "run", tmp_path / "faces", batch_size=7)
    done = run_training(config, "--mixup", "0.2")
    assert done.returncode == 2
    assert "batch_size must be even, got 7" in done.stderr
    assert not (tmp_path / "run").exists()
