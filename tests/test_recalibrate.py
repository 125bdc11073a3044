"""Recalibrating a trained folder on its own validation split: idempotent, optionally with test-time flip, and the
rewritten folder scores its validation images exactly as its recorded metrics say."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hub_utils import load_detector
from hub_utils.model_folder import read_config
from tests.conftest import make_model_folder
from tests.test_train import run_training, write_config, write_generated_tree
from training.config import TrainConfig
from training.dataset import image_of
from training.deepfake_metrics import compute_metrics
from training.perturb import neutral_reencode
from training.pipeline import build_splits
from training.recalibrate import main


@pytest.mark.slow
def test_recalibration_refits_on_validation_and_adds_the_flip(tmp_path: Path) -> None:
    generated = write_generated_tree(tmp_path / "data")
    output = tmp_path / "run"
    done = run_training(write_config(tmp_path / "config.json", [str(generated)], output, tmp_path / "cache", epochs=1))
    assert done.returncode == 0, done.stderr[-3000:]
    trained = read_config(output)[1]
    (output / "evaluation.json").write_text("{}")  # a test evaluation of the folder as it was

    assert main(["--model", str(output), "--data", str(generated)]) == 0
    again = read_config(output)[1]  # the stored temperature was unfolded first, so nothing moves
    assert again.temperature == pytest.approx(trained.temperature, rel=1e-4)
    assert again.threshold == pytest.approx(trained.threshold, rel=1e-4)
    assert not (output / "evaluation.json").exists()

    assert main(["--model", str(output), "--data", str(generated), "--test-time-flip"]) == 0
    flipped = read_config(output)[1]
    assert flipped.test_time_flip and flipped.training_data == trained.training_data
    assert "mirror image" in (output / "README.md").read_text()
    assert_scores_as_recorded(output, generated)


def assert_scores_as_recorded(folder: Path, data: Path) -> None:
    """The folder, loaded as users load it, scores its neutral validation images as its recorded metrics say."""
    deepfake = read_config(folder)[1]
    validation = build_splits(TrainConfig(data=[str(data)]))["validation"]
    scores = [r.fake_probability for r in load_detector(folder).predict(
        [neutral_reencode(image_of(row)) for row in validation])]
    recorded = deepfake.metrics["validation_neutral"]
    measured = compute_metrics(np.asarray(validation["label"]), np.asarray(scores), deepfake.threshold)
    assert measured["balanced_accuracy"] == pytest.approx(recorded["balanced_accuracy"])
    assert measured["roc_auc"] == pytest.approx(recorded["roc_auc"])


def test_a_folder_without_its_training_config_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = make_model_folder(tmp_path / "bare")
    assert main(["--model", str(folder), "--data", str(tmp_path)]) == 2
    assert "no train_config.json" in capsys.readouterr().err
