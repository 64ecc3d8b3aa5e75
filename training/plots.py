"""The figures published with a model: training curves, ROC, confusion matrix, reliability."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from cxr_pneumonia.config import LABELS
from cxr_pneumonia.metrics import reliability_bins, roc_auc, roc_curve


def plot_training_curves(history_csv: Path, out: Path) -> None:
    """Loss and AUC per epoch, training against validation (training AUC only when it was logged)."""
    with history_csv.open() as handle:
        rows = list(csv.DictReader(handle))
    epochs = [int(row["epoch"]) + 1 for row in rows]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, key in zip(axes, ("loss", "auc"), strict=True):
        if key in rows[0]:
            axis.plot(epochs, [float(row[key]) for row in rows], label="train")
        axis.plot(epochs, [float(row[f"val_{key}"]) for row in rows], label="validation")
        axis.set_xlabel("epoch")
        axis.set_title(key)
        axis.legend()
    _save(figure, out)


def plot_roc(curves: dict[str, tuple[np.ndarray, np.ndarray]], out: Path) -> None:
    """ROC curves of several labelled sets, name -> (labels, probabilities)."""
    figure, axis = plt.subplots(figsize=(5, 5))
    for name, (labels, probabilities) in curves.items():
        fpr, tpr, _ = roc_curve(labels, probabilities)
        axis.plot(fpr, tpr, label=f"{name} (AUC {roc_auc(labels, probabilities):.3f})")
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":")
    axis.set_xlabel("1 - specificity")
    axis.set_ylabel("sensitivity")
    axis.legend(loc="lower right")
    _save(figure, out)


def plot_confusion_matrix(matrix: list[list[int]], title: str, out: Path) -> None:
    """A 2x2 confusion matrix, rows true, columns predicted."""
    figure, axis = plt.subplots(figsize=(4.5, 4))
    values = np.asarray(matrix)
    axis.imshow(values, cmap="Blues")
    for (row, column), count in np.ndenumerate(values):
        colour = "white" if count > values.max() / 2 else "black"
        axis.text(column, row, str(count), ha="center", va="center", color=colour, fontsize=14)
    axis.set_xticks([0, 1], LABELS)
    axis.set_yticks([0, 1], LABELS)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(title)
    _save(figure, out)


def plot_reliability(curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str, out: Path, bins: int = 10) -> None:
    """Observed pneumonia frequency against predicted probability, per equal-width bin, for each labelled set."""
    figure, axis = plt.subplots(figsize=(5, 5))
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
    for name, (labels, probabilities) in curves.items():
        centres, observed, counts = reliability_bins(np.asarray(labels), np.asarray(probabilities), bins)
        axis.plot(centres, observed, marker="o", label=name)
        for x, y, count in zip(centres, observed, counts, strict=True):
            axis.annotate(str(count), (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
    axis.set_xlabel("predicted pneumonia probability")
    axis.set_ylabel("observed pneumonia frequency")
    axis.set_title(title)
    axis.legend(loc="upper left")
    _save(figure, out)


def _save(figure: plt.Figure, out: Path) -> None:
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    plt.close(figure)


def plot_risk_coverage(curves: dict[str, dict], out: Path) -> None:
    """Error rate against the share answered, name -> a report with risk_coverage and, if the model has a band,
    uncertain_share and accuracy_outside_band (marked as the shipped point)."""
    figure, axis = plt.subplots(figsize=(5, 4))
    for name, report in curves.items():
        curve = report["risk_coverage"]
        line = axis.plot(curve["coverage"], curve["risk"], label=name)[0]
        if report.get("uncertain_band"):
            axis.plot(1 - report["uncertain_share"], 1 - report["accuracy_outside_band"], "o", color=line.get_color())
    axis.set_xlabel("share of images answered (coverage)")
    axis.set_ylabel("error rate of the answers (risk)")
    axis.set_xlim(0, 1)
    axis.set_ylim(bottom=0)
    axis.legend(fontsize="small")
    _save(figure, out)
