"""Threshold rules of the operating-points bench, on scores whose answer is known."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from bench import operating_points
from bench.common import operating_points_table, rule_summary, rule_summary_table
from bench.operating_points import real_recall_threshold


def test_a_reals_only_threshold_catches_unseen_fakes_that_the_validation_ba_rule_lets_pass() -> None:
    reals = np.linspace(0.0, 0.6, 100)
    # validation: reals and confident seen fakes; unseen: the same reals and less fake-looking unseen fakes
    scores = np.concatenate([reals, np.full(50, 0.95), reals, np.full(50, 0.55)])
    labels = np.array([0] * 100 + [1] * 50 + [0] * 100 + [1] * 50)
    validation = np.arange(len(scores)) < 150
    masks = {"validation": validation, "unseen": ~validation, "seen": validation}
    rows = {row["rule"]: row for row in operating_points.operating_points(scores, labels, masks, [0.8])}
    assert list(rows) == ["validation BA", "real recall 0.8"]
    by_ba, by_reals = rows["validation BA"], rows["real recall 0.8"]
    assert by_ba["threshold"] > 0.6 and by_ba["unseen_fake_recall"] == 0.0 and by_ba["seen_balanced_accuracy"] == 1.0
    assert by_reals["validation_real_recall"] == pytest.approx(0.8, abs=0.01)
    assert by_reals["unseen_fake_recall"] == 1.0
    assert by_reals["unseen_balanced_accuracy"] > by_ba["unseen_balanced_accuracy"]
    assert f"| {by_reals['threshold']:.3f} |" in operating_points_table([{"run": "r", **by_reals}])


def test_the_rule_summary_averages_each_rule_over_runs_and_counts_where_it_beats_the_training_rule() -> None:
    def point(run: str, rule: str, unseen: float, seen: float) -> dict:
        return {"run": run, "rule": rule, "unseen_balanced_accuracy": unseen, "seen_balanced_accuracy": seen}

    rows = [point("a", "validation BA", 0.6, 0.9), point("a", "real recall 0.9", 0.7, 0.8),
            point("b", "validation BA", 0.5, 0.95), point("b", "real recall 0.9", 0.4, 0.85),
            point("c", "real recall 0.9", 0.99, 0.99)]  # no training-rule row: nothing to compare it with
    summary = {row["rule"]: row for row in rule_summary(rows)}
    assert list(summary) == ["validation BA", "real recall 0.9"]
    by_recall = summary["real recall 0.9"]
    assert by_recall["runs"] == 2 and by_recall["above_validation_rule"] == 1
    assert by_recall["unseen_mean"] == pytest.approx(0.55) and by_recall["unseen_min"] == pytest.approx(0.4)
    assert by_recall["seen_mean"] == pytest.approx(0.825)
    assert summary["validation BA"]["above_validation_rule"] == 0
    assert "| real recall 0.9 | 2 | 0.550 | 0.400 | 0.825 | 1 |" in rule_summary_table(list(summary.values()))


def test_the_real_recall_threshold_calls_that_share_of_reals_real() -> None:
    reals = np.linspace(0.0, 1.0, 101)
    assert np.mean(reals < real_recall_threshold(reals, 0.9)) == pytest.approx(0.9, abs=0.01)


def test_a_folder_that_is_not_a_run_is_refused_by_name(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as usage_error:
        operating_points.main([str(tmp_path), "--output", str(tmp_path / "out.json")])
    assert usage_error.value.code == 2 and "train_config.json" in capsys.readouterr().err
    assert not (tmp_path / "out.json").exists()


def test_an_ensemble_of_runs_on_different_splits_is_refused_before_scoring(tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture) -> None:
    from hub_utils.constants import TRAIN_CONFIG_NAME
    from training.config import TrainConfig

    runs = []
    for name, split_seed in [("resize", 0), ("crop-seed1", 1)]:
        folder = tmp_path / name
        folder.mkdir()
        config = TrainConfig(data=[str(tmp_path / "data")], exclude=["generator=flux1_pro"], split_seed=split_seed)
        (folder / TRAIN_CONFIG_NAME).write_text(json.dumps(config.to_dict()))
        runs.append(str(folder))
    with pytest.raises(SystemExit) as usage_error:
        operating_points.main([",".join(runs), "--output", str(tmp_path / "out.json")])
    assert usage_error.value.code == 2 and re.search("split_seed.*resize.*crop-seed1", capsys.readouterr().err)
    assert not (tmp_path / "out.json").exists()
