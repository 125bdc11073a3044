"""Weight averaging of runs of one recipe: the soup holds the members' mean weights, fresh BatchNorm statistics and
its own calibration, and runs of different recipes are refused."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hub_utils.model_folder import load_model, read_config
from tests.conftest import make_model_folder
from tests.test_recalibrate import assert_scores_as_recorded
from tests.test_train import run_training, write_config, write_generated_tree
from training.config import TrainConfig
from training.soup import main


def unfolded_state(folder: Path) -> dict[str, torch.Tensor]:
    """A folder's weights with its folded temperature multiplied back into the classifier."""
    model, _, deepfake = load_model(folder)
    state = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    head = model.pretrained_cfg["classifier"]
    for name in (f"{head}.weight", f"{head}.bias"):
        state[name] *= deepfake.temperature
    return state


@pytest.mark.slow
def test_a_soup_averages_the_runs_and_refits_batchnorm_and_calibration(tmp_path: Path) -> None:
    generated = write_generated_tree(tmp_path / "data")
    runs = []
    for seed in (0, 1):
        output = tmp_path / f"run{seed}"
        config = write_config(tmp_path / f"config{seed}.json", [str(generated)], output, tmp_path / "cache", epochs=1,
                              seed=seed)
        done = run_training(config)
        assert done.returncode == 0, done.stderr[-3000:]
        runs.append(output)
    soup = tmp_path / "soup"

    averaged = tmp_path / "averaged"
    for output, batches in ((soup, "3"), (averaged, "0")):
        members = [item for run in runs for item in ("--model", str(run))]
        assert main([*members, "--data", str(generated), "--output", str(output), "--batchnorm-batches", batches,
                     "--num-workers", "0"]) == 0

    members = [unfolded_state(run) for run in runs]
    mean = {name: (members[0][name].float() + members[1][name].float()) / 2 for name in members[0]}
    for name, tensor in unfolded_state(soup).items():
        if "running_" in name:  # estimated afresh on training batches, not averaged
            assert not torch.allclose(tensor, mean[name], atol=1e-6), name
        elif name.endswith("num_batches_tracked"):
            assert int(tensor) == 3, name
        else:
            assert torch.allclose(tensor, mean[name], atol=1e-5), name
    for name, tensor in unfolded_state(averaged).items():
        if tensor.is_floating_point():
            assert torch.allclose(tensor, mean[name], atol=1e-5), name
    assert "BatchNorm statistics averaged too" in (averaged / "README.md").read_text()

    deepfake = read_config(soup)[1]
    assert deepfake.training_data["weight_average"] == {"members": ["run0", "run1"], "seeds": [0, 1],
                                                        "batchnorm_batches": 3}
    assert "uniform average of 2 runs" in (soup / "README.md").read_text()
    assert_scores_as_recorded(soup, generated)


def member(folder: Path, **config: object) -> Path:
    make_model_folder(folder)
    (folder / "train_config.json").write_text(json.dumps(TrainConfig(backbone="test_efficientnet", **config).to_dict()))
    return folder


@pytest.mark.parametrize("second", [{"image_size": 96}, {"split_seed": 1}, {"holdout": ["generator=sdxl"]}])
def test_runs_of_different_recipes_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture, second: dict) -> None:
    a, b = member(tmp_path / "a", image_size=64), member(tmp_path / "b", **{"image_size": 64, **second})
    assert main(["--model", str(a), "--model", str(b), "--data", str(tmp_path), "--output",
                 str(tmp_path / "soup")]) == 2
    assert f"differ in {next(iter(second))}" in capsys.readouterr().err
    assert not (tmp_path / "soup").exists()


def test_a_folder_without_its_training_config_or_a_lone_model_is_refused(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    a, bare = member(tmp_path / "a"), make_model_folder(tmp_path / "bare")
    assert main(["--model", str(a), "--model", str(bare), "--data", str(tmp_path), "--output",
                 str(tmp_path / "soup")]) == 2
    assert "no train_config.json" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage_error:  # a usage error, as argparse reports them
        main(["--model", str(a), "--data", str(tmp_path), "--output", str(tmp_path / "soup")])
    assert usage_error.value.code == 2 and "at least two" in capsys.readouterr().err
