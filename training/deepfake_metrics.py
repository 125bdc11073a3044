"""Deepfake detection metrics (fake = 1 is the positive class), computed with scikit-learn.

Also an `evaluate` metric module: `evaluate.load("training/deepfake_metrics.py")` works offline, where the
canonical Hub metrics do not. Self-contained on purpose: `evaluate` copies this file before importing it.
"""
from __future__ import annotations

from typing import Any

import datasets
import evaluate
import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

from hub_utils.constants import LABEL_NAMES


def equal_error_rate(labels: np.ndarray, scores: np.ndarray) -> float:
    """The error rate where the false-positive and false-negative rates meet on the ROC curve."""
    fpr, tpr, _ = roc_curve(labels, scores)
    fnr = 1.0 - tpr
    index = int(np.nanargmin(np.abs(fnr - fpr)))
    return float((fpr[index] + fnr[index]) / 2.0)


def compute_metrics(labels: Any, scores: Any, threshold: float = 0.5) -> dict[str, Any]:
    """Accuracy, balanced accuracy, ROC-AUC, AP, EER, per-class P/R/F1 and the majority baseline."""
    labels = np.asarray(labels, dtype=int)
    scores = np.asarray(scores, dtype=np.float64)
    predictions = (scores >= threshold).astype(int)
    both = len(np.unique(labels)) == 2
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predictions, labels=[0, 1], zero_division=0)
    majority = int(np.bincount(labels, minlength=2).argmax()) if len(labels) else 1
    return {
        "n": int(len(labels)),
        "threshold": float(threshold),
        "accuracy": float(accuracy_score(labels, predictions)),
        "balanced_accuracy": float(balanced_accuracy_score(labels, predictions)) if both else float(
            accuracy_score(labels, predictions)),
        "roc_auc": float(roc_auc_score(labels, scores)) if both else None,
        "average_precision": float(average_precision_score(labels, scores)) if both else None,
        "eer": equal_error_rate(labels, scores) if both else None,
        "per_class": {name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                             "support": int(support[i])} for i, name in enumerate(LABEL_NAMES)},
        "confusion_matrix": confusion_matrix(labels, predictions, labels=[0, 1]).tolist(),
        "majority_baseline": {"label": LABEL_NAMES[majority],
                              "accuracy": float(np.mean(labels == majority)) if len(labels) else None},
    }


class DeepfakeMetrics(evaluate.Metric):
    """`evaluate` wrapper: references are labels (0 real, 1 fake), predictions are P(fake)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=__doc__,
            citation="",
            inputs_description="predictions: P(fake) floats; references: 0 real / 1 fake; threshold: float",
            features=datasets.Features({"predictions": datasets.Value("float64"),
                                        "references": datasets.Value("int32")}),
        )

    def _compute(self, predictions: list[float], references: list[int], threshold: float = 0.5) -> dict[str, Any]:
        return compute_metrics(references, predictions, threshold)
