"""The linear probe before fine-tuning: the head it sets scores as the regression it fitted, and training uses it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from hub_utils.model_folder import FAKE_INDEX, REAL_INDEX
from tests.test_train import run_training, write_config, write_generated_tree
from training.backbone import create_backbone
from training.probe import fit_linear_probe


def brighter_fakes(n: int = 64, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise images; the fakes carry a brightness offset that any pooled feature can see."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % 2
    images = torch.rand(n, 3, size, size, generator=generator)
    images[labels == FAKE_INDEX] += 0.5
    return images, labels


def test_the_probed_head_scores_as_the_fitted_regression() -> None:
    torch.manual_seed(0)
    model = create_backbone("test_efficientnet", "none", 32)
    assert not model.get_classifier().weight.any()  # the zero head training starts from without the probe
    images, labels = brighter_fakes()
    model.train()
    accuracy = fit_linear_probe(model, DataLoader(TensorDataset(images, labels), batch_size=16))
    assert model.training  # the probe's eval-mode pass leaves the model as it found it
    assert accuracy >= 0.9
    head = model.get_classifier()
    assert torch.equal(head.weight[REAL_INDEX], -head.weight[FAKE_INDEX])
    model.eval()
    with torch.no_grad():
        predicted = model(images).softmax(1).argmax(1)
    assert (predicted == labels).float().mean().item() == pytest.approx(accuracy)
    model.train()  # as training sees them: BatchNorm on the batch's own statistics, which the probe re-estimated
    with torch.no_grad():
        predicted = model(images).argmax(1)
    assert (predicted == labels).float().mean().item() >= 0.9


def test_one_class_is_refused_by_name() -> None:
    model = create_backbone("test_efficientnet", "none", 32)
    images, _ = brighter_fakes(16)
    with pytest.raises(ValueError, match="real and fake"):
        fit_linear_probe(model, DataLoader(TensorDataset(images, torch.zeros(16, dtype=torch.long)), batch_size=8))


@pytest.mark.slow
def test_training_with_linear_probe_starts_from_the_probe(tmp_path: Path) -> None:
    generated = write_generated_tree(tmp_path / "generated", per_class=16)
    output = tmp_path / "run"
    config = write_config(tmp_path / "config.json", [str(generated)], output, tmp_path / "faces", epochs=1)
    done = run_training(config, "--linear-probe")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "linear probe on frozen features: training accuracy" in done.stdout + done.stderr
    assert json.loads((output / "train_config.json").read_text())["linear_probe"] is True
    assert (output / "model.safetensors").is_file()
