"""Plots of training runs and evaluations (PNG, written beside the model or report)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay, RocCurveDisplay  # noqa: E402

from hub_utils.constants import LABEL_NAMES


def plot_training_curves(log_path: Path, output: Path) -> Path:
    """Training loss and validation balanced accuracy / AUC per epoch."""
    records = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]
    epochs = [r["epoch"] for r in records]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(epochs, [r["train_loss"] for r in records], marker="o")
    left.set(title="training loss", xlabel="epoch")
    for key in ("val_raw_balanced_accuracy", "val_neutral_balanced_accuracy", "val_neutral_roc_auc"):
        right.plot(epochs, [r[key] for r in records], marker="o", label=key.removeprefix("val_"))
    right.set(title="validation", xlabel="epoch")
    right.legend()
    figure.tight_layout()
    figure.savefig(output, dpi=100)
    plt.close(figure)
    return Path(output)


def plot_evaluation(labels: np.ndarray, scores: np.ndarray, threshold: float, report: dict[str, Any],
                    folder: Path) -> list[Path]:
    """Confusion matrix, ROC, reliability diagram, per-generator and per-perturbation bars."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []

    def save(figure, name: str) -> None:
        figure.tight_layout()
        figure.savefig(folder / name, dpi=100)
        plt.close(figure)
        paths.append(folder / name)

    figure, axis = plt.subplots(figsize=(4, 4))
    ConfusionMatrixDisplay.from_predictions(labels, (scores >= threshold).astype(int), display_labels=LABEL_NAMES,
                                            ax=axis, colorbar=False)
    axis.set_title(f"threshold {threshold:.3f}")
    save(figure, "confusion_matrix.png")
    if len(np.unique(labels)) == 2:
        figure, axis = plt.subplots(figsize=(4, 4))
        RocCurveDisplay.from_predictions(labels, scores, ax=axis, name="P(fake)")
        save(figure, "roc.png")
    figure, axis = plt.subplots(figsize=(4, 4))
    edges = np.linspace(0, 1, 11)
    index = np.clip(np.digitize(scores, edges[1:-1]), 0, 9)
    centres = [(edges[b] + edges[b + 1]) / 2 for b in range(10) if np.any(index == b)]
    observed = [labels[index == b].mean() for b in range(10) if np.any(index == b)]
    axis.plot([0, 1], [0, 1], "--", color="grey")
    axis.plot(centres, observed, marker="o")
    axis.set(title="reliability", xlabel="predicted P(fake)", ylabel="observed fake fraction")
    save(figure, "reliability.png")
    for key, name in (("per_generator", "per_generator.png"), ("per_perturbation", "per_perturbation.png")):
        rows = report.get(key) or {}
        if rows:
            figure, axis = plt.subplots(figsize=(8, max(3, 0.3 * len(rows))))
            axis.barh(list(rows), [r["accuracy"] for r in rows.values()])
            axis.set(xlim=(0, 1), xlabel="accuracy", title=key.replace("_", " "))
            save(figure, name)
    return paths
