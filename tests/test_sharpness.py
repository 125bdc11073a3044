"""Sharpness-aware minimisation: the block moves the weights uphill by exactly rho, leaves BatchNorm alone, and puts
everything back; training with --sam writes a model folder."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from tests.test_train import run_training, train_an_epoch, write_config, write_generated_tree
from training.backbone import create_backbone
from training.config import TrainConfig
from training.sharpness import worst_nearby_weights


def model_and_batch() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = create_backbone("test_efficientnet", "none", 32)
    torch.nn.init.normal_(model.get_classifier().weight, std=0.1)  # a zero head would give no gradient below it
    images, labels = torch.rand(16, 3, 32, 32), torch.arange(16) % 2
    return model.train(), images, labels


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def loss_of(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(model(images), labels)


def test_the_block_climbs_rho_uphill_and_restores_everything() -> None:
    model, images, labels = model_and_batch()
    loss_of(model, images, labels).backward()
    before = snapshot(model)
    parameters = dict(model.named_parameters())
    with torch.no_grad():
        model.eval()
        loss_at_w = loss_of(model, images, labels).item()
        model.train()
    with worst_nearby_weights(model, rho=0.05):
        moved = torch.cat([(parameters[name].detach() - before[name]).flatten() for name in parameters])
        assert torch.linalg.vector_norm(moved).item() == pytest.approx(0.05, rel=1e-4)
        with torch.no_grad():
            loss_of(model, images, labels)  # a train-mode pass: BatchNorm statistics must not move
            model.eval()
            loss_nearby = loss_of(model, images, labels).item()
            model.train()
        for name, value in model.state_dict().items():
            if "running" in name:  # the batch count goes back on exit
                torch.testing.assert_close(value, before[name], rtol=0, atol=0)
    assert loss_nearby > loss_at_w  # along the gradient the loss rises
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, before[name], rtol=0, atol=0)
    assert all(module.momentum == 0.1 for module in model.modules() if isinstance(module, torch.nn.BatchNorm2d))


def test_without_gradients_it_says_what_to_do_first() -> None:
    model, _, _ = model_and_batch()
    with pytest.raises(ValueError, match="call backward"):
        with worst_nearby_weights(model, rho=0.05):
            pass


def test_training_with_sam_writes_a_model_folder(tmp_path: Path) -> None:
    generated = write_generated_tree(tmp_path / "generated", per_class=16)
    output = tmp_path / "run"
    config = write_config(tmp_path / "config.json", [str(generated)], output, tmp_path / "faces", epochs=1)
    done = run_training(config, "--sam", "0.05")
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((output / "train_config.json").read_text())["sam_rho"] == 0.05
    assert (output / "model.safetensors").is_file()


def test_each_sam_step_takes_two_passes_and_ends_at_new_weights() -> None:
    def passes_and_change(config: TrainConfig) -> tuple[int, float]:
        model, images, labels = model_and_batch()
        before = snapshot(model)
        calls = []
        model.register_forward_hook(lambda module, args, output: calls.append(1))
        train_an_epoch(model, DataLoader(TensorDataset(images, labels), batch_size=4), config, lr=0.01)
        change = sum((value.float() - before[name].float()).abs().sum().item() for name, value in model.state_dict().items())
        return len(calls), change

    assert passes_and_change(TrainConfig(batch_size=4, channels_last=False))[0] == 4
    passes, change = passes_and_change(TrainConfig(batch_size=4, channels_last=False, sam_rho=0.05))
    assert passes == 8 and change > 0
