"""Confidence calibration on validation scores: temperature scaling, the decision threshold, and ECE."""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from sklearn.metrics import balanced_accuracy_score

from training.deepfake_metrics import compute_metrics

EPSILON = 1e-6


def to_logit(probabilities: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)) = z_fake - z_real for a 2-class softmax."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), EPSILON, 1 - EPSILON)
    return np.log(p / (1 - p))


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """P(fake) after dividing the logits by `temperature`."""
    return 1.0 / (1.0 + np.exp(-to_logit(probabilities) / temperature))


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood of the labels."""
    logits, labels = to_logit(probabilities), np.asarray(labels, dtype=np.float64)

    def nll(log_t: float) -> float:
        z = logits / np.exp(log_t)
        return float(np.mean(np.logaddexp(0.0, z) - labels * z))

    return float(np.exp(minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded").x))


def best_threshold(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The threshold that maximises balanced accuracy (midpoint between neighbouring scores)."""
    p = np.unique(np.asarray(probabilities, dtype=np.float64))
    candidates = np.concatenate([[0.5], (p[:-1] + p[1:]) / 2.0]) if len(p) > 1 else np.array([0.5])
    candidates = candidates[(candidates > 0.0) & (candidates < 1.0)]
    scores = [balanced_accuracy_score(labels, probabilities >= t) for t in candidates]
    best = np.flatnonzero(np.isclose(scores, np.max(scores)))
    return float(candidates[best[len(best) // 2]])  # middle of the best plateau


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE of the predicted class's confidence over equal-width bins."""
    p = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels)
    confidence = np.maximum(p, 1 - p)
    correct = ((p >= 0.5).astype(int) == labels).astype(np.float64)
    edges = np.linspace(0.5, 1.0, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    return float(sum(abs(correct[index == b].mean() - confidence[index == b].mean()) * np.mean(index == b)
                     for b in range(bins) if np.any(index == b)))


def fold_temperature(model: torch.nn.Module, temperature: float) -> None:
    """Divide the classifier's weights and bias by the temperature, so every loader sees calibrated logits."""
    head = model.get_classifier()
    with torch.no_grad():
        head.weight.div_(temperature)
        if head.bias is not None:
            head.bias.div_(temperature)


def fit_calibration(scores: np.ndarray, labels: np.ndarray) -> dict:
    """Temperature and threshold fitted on neutral validation scores (P(fake) before any temperature), with the
    calibrated scores' metrics and ECE before and after: the `deepfake` section's threshold, temperature and
    `metrics.validation_neutral`."""
    temperature = fit_temperature(scores, labels)
    calibrated = apply_temperature(scores, temperature)
    threshold = best_threshold(calibrated, labels)
    metrics = compute_metrics(labels, calibrated, threshold)
    metrics["ece_before"] = expected_calibration_error(scores, labels)
    metrics["ece_after"] = expected_calibration_error(calibrated, labels)
    return {"threshold": threshold, "temperature": temperature, "metrics": {"validation_neutral": metrics}}
