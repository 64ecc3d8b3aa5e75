"""Figures of an evaluation on the user's images: the confusion matrix, the ROC curve with the model's operating
point, and the reliability diagram. Plain matplotlib Figures (no pyplot: safe in a server's threads)."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from cxr_pneumonia.config import LABELS
from cxr_pneumonia.evaluation import Evaluation

SMALL = 8


def confusion_figure(evaluation: Evaluation) -> Figure:
    """The 2x2 confusion matrix at the model's threshold, rows true and columns decided, with counts."""
    confusion = evaluation.metrics()["confusion"]
    values = np.array([[confusion["tn"], confusion["fp"]], [confusion["fn"], confusion["tp"]]])
    figure = Figure(figsize=(4, 3.6), layout="constrained")
    axes = figure.subplots()
    axes.imshow(values, cmap="Blues", vmin=0)
    for (row, column), count in np.ndenumerate(values):
        colour = "white" if count > values.max() / 2 else "black"
        axes.text(column, row, str(count), ha="center", va="center", color=colour, fontsize=14)
    axes.set_xticks([0, 1], LABELS, fontsize=SMALL)
    axes.set_yticks([0, 1], LABELS, fontsize=SMALL)
    axes.set_xlabel("the model's decision", fontsize=SMALL)
    axes.set_ylabel("your label", fontsize=SMALL)
    axes.set_title(f"At the model's threshold of {evaluation.threshold:.2f}", fontsize=SMALL)
    return figure


def roc_figure(evaluation: Evaluation) -> Figure:
    """The ROC curve with the operating point at the model's threshold (or a note when one class is missing)."""
    figure = Figure(figsize=(4, 3.6), layout="constrained")
    axes = figure.subplots()
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    roc = evaluation.roc()
    if roc is None:
        axes.text(0.5, 0.5, "No ROC curve:\nit needs images of both classes", ha="center", va="center",
                  fontsize=SMALL)
    else:
        auc = evaluation.metrics()["auc"]
        axes.plot(roc["fpr"], roc["tpr"], label=f"your images (AUC {auc:.3f})")
        point = roc["operating_point"]
        axes.plot([point["fpr"]], [point["tpr"]], "o", color="crimson",
                  label=f"the model's threshold ({evaluation.threshold:.2f})")
        axes.legend(loc="lower right", fontsize=SMALL)
    axes.set_title("ROC curve on your images", fontsize=SMALL)
    axes.set_xlim(-0.02, 1.02)
    axes.set_ylim(-0.02, 1.02)
    axes.set_xlabel("1 - specificity (false-positive rate)", fontsize=SMALL)
    axes.set_ylabel("sensitivity", fontsize=SMALL)
    axes.tick_params(labelsize=SMALL)
    return figure


def reliability_figure(evaluation: Evaluation) -> Figure:
    """Observed pneumonia frequency against the predicted probability, per bin, each point with its count."""
    figure = Figure(figsize=(4, 3.6), layout="constrained")
    axes = figure.subplots()
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="perfect calibration")
    bins = evaluation.reliability()
    axes.plot(bins["predicted"], bins["observed"], marker="o", label="your images")
    for x, y, count in zip(bins["predicted"], bins["observed"], bins["count"], strict=True):
        axes.annotate(str(count), (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
    axes.set_xlim(-0.02, 1.02)
    axes.set_ylim(-0.02, 1.02)
    axes.set_xlabel("predicted pneumonia probability", fontsize=SMALL)
    axes.set_ylabel("share with pneumonia", fontsize=SMALL)
    axes.legend(loc="lower right", fontsize=SMALL)
    axes.set_title("Reliability: each point a bin, with its count", fontsize=SMALL)
    axes.tick_params(labelsize=SMALL)
    return figure
