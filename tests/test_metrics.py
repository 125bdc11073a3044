"""Metrics against hand-computed values, through scikit-learn and through `evaluate.load` of our module."""
from __future__ import annotations

import evaluate
import numpy as np
import pytest

from tests.conftest import REPO_ROOT
from training.calibrate import apply_temperature, best_threshold, expected_calibration_error, fit_temperature
from training.deepfake_metrics import compute_metrics

LABELS = [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]
SCORES = [0.1, 0.2, 0.6, 0.3, 0.9, 0.8, 0.4, 0.7, 0.95, 0.55]


def test_hand_computed_values() -> None:
    m = compute_metrics(LABELS, SCORES, threshold=0.5)
    # predictions: 0 0 1 0 | 1 1 0 1 1 1 -> TN 3, FP 1, FN 1, TP 5
    assert m["confusion_matrix"] == [[3, 1], [1, 5]]
    assert m["accuracy"] == pytest.approx(8 / 10)
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 5 / 6) / 2)
    assert m["per_class"]["fake"]["precision"] == pytest.approx(5 / 6)
    assert m["per_class"]["real"]["recall"] == pytest.approx(3 / 4)
    # AUC: of 24 (real, fake) pairs the fake scores higher in all but (0.6, 0.4) and (0.6, 0.55)
    assert m["roc_auc"] == pytest.approx(22 / 24)
    assert m["majority_baseline"] == {"label": "fake", "accuracy": 0.6}
    assert 0.0 <= m["eer"] <= 0.5


def test_auc_pairs_exactly() -> None:
    fakes = [score for score, label in zip(SCORES, LABELS) if label]
    reals = [score for score, label in zip(SCORES, LABELS) if not label]
    pairs = np.mean([1.0 if f > r else 0.5 if f == r else 0.0 for f in fakes for r in reals])
    assert compute_metrics(LABELS, SCORES)["roc_auc"] == pytest.approx(pairs)


def test_evaluate_module_loads_offline_and_matches() -> None:
    metric = evaluate.load(str(REPO_ROOT / "training" / "deepfake_metrics.py"))
    result = metric.compute(predictions=SCORES, references=LABELS, threshold=0.5)
    assert result == compute_metrics(LABELS, SCORES, 0.5)


def test_temperature_and_threshold() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 2000)
    logits = (labels * 2 - 1) * 1.0 + rng.normal(0, 1, 2000)
    # the true log-odds of x ~ N(+-1, 1) are 2x; scores at 4x are twice too sharp: temperature 2
    overconfident = 1 / (1 + np.exp(-logits * 4))
    temperature = fit_temperature(overconfident, labels)
    assert 1.7 < temperature < 2.3
    calibrated = apply_temperature(overconfident, temperature)
    assert expected_calibration_error(calibrated, labels) < expected_calibration_error(overconfident, labels) / 2
    shifted = 1 / (1 + np.exp(-(logits - 1.0)))  # every score pushed down: the best threshold moves below 0.5
    assert best_threshold(shifted, labels) < 0.4


def test_ece_of_perfect_calibration_is_small() -> None:
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 1, 20000)
    labels = (rng.uniform(0, 1, 20000) < p).astype(int)
    assert expected_calibration_error(p, labels) < 0.02
