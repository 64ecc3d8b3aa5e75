"""Figures of an evaluation on the user's images: the confusion matrix, the ROC curve with the model's operating
point, and the reliability diagram. Plain matplotlib Figures (no pyplot: safe in a server's threads). Each takes its
words as `texts` (English by default; a page passes its own language's, as to lab.curves_figure), filled in by the
figure with the numbers named in braces, through `fill` (str.format by default; a page passes one that writes numbers
its language's way)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from cxr_pneumonia.config import LABELS
from cxr_pneumonia.evaluation import Evaluation

SMALL = 8
Fill = Callable[..., str]  # fill(template, **values): the template with its numbers written in


def plain_fill(template: str, **values: object) -> str:
    return template.format(**values)

CONFUSION_TEXTS = {"decision": "the model's decision", "truth": "your label",
                   "title": "At the model's threshold of {threshold:.2f}"}
ROC_TEXTS = {"none": "No ROC curve:\nit needs images of both classes", "yours": "your images (AUC {auc:.3f})",
             "threshold": "the model's threshold ({threshold:.2f})", "title": "ROC curve on your images",
             "x": "1 - specificity (false-positive rate)", "y": "sensitivity"}
RELIABILITY_TEXTS = {"perfect": "perfect calibration", "yours": "your images",
                     "x": "predicted pneumonia probability", "y": "share with pneumonia",
                     "title": "Reliability: each point a bin, with its count"}


def confusion_figure(evaluation: Evaluation, texts: Mapping[str, str] = CONFUSION_TEXTS,
                     class_names: Sequence[str] = LABELS, fill: Fill = plain_fill) -> Figure:
    """The 2x2 confusion matrix at the model's threshold, rows true and columns decided, with counts; the classes
    named by `class_names` (in LABELS' order)."""
    confusion = evaluation.metrics()["confusion"]
    values = np.array([[confusion["tn"], confusion["fp"]], [confusion["fn"], confusion["tp"]]])
    figure = Figure(figsize=(4, 3.6), layout="constrained")
    axes = figure.subplots()
    axes.imshow(values, cmap="Blues", vmin=0)
    for (row, column), count in np.ndenumerate(values):
        colour = "white" if count > values.max() / 2 else "black"
        axes.text(column, row, str(count), ha="center", va="center", color=colour, fontsize=14)
    axes.set_xticks([0, 1], class_names, fontsize=SMALL)
    axes.set_yticks([0, 1], class_names, fontsize=SMALL)
    axes.set_xlabel(texts["decision"], fontsize=SMALL)
    axes.set_ylabel(texts["truth"], fontsize=SMALL)
    axes.set_title(fill(texts["title"], threshold=evaluation.threshold), fontsize=SMALL, wrap=True)
    return figure


def roc_figure(evaluation: Evaluation, texts: Mapping[str, str] = ROC_TEXTS, fill: Fill = plain_fill) -> Figure:
    """The ROC curve with the operating point at the model's threshold (or a note when one class is missing)."""
    figure = Figure(figsize=(4, 3.6), layout="constrained")
    axes = figure.subplots()
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    roc = evaluation.roc()
    if roc is None:
        axes.text(0.5, 0.5, texts["none"], ha="center", va="center", fontsize=SMALL)
    else:
        auc = evaluation.metrics()["auc"]
        axes.plot(roc["fpr"], roc["tpr"], label=fill(texts["yours"], auc=auc))
        point = roc["operating_point"]
        axes.plot([point["fpr"]], [point["tpr"]], "o", color="crimson",
                  label=fill(texts["threshold"], threshold=evaluation.threshold))
        axes.legend(loc="lower right", fontsize=SMALL)
    axes.set_title(texts["title"], fontsize=SMALL, wrap=True)
    axes.set_xlim(-0.02, 1.02)
    axes.set_ylim(-0.02, 1.02)
    axes.set_xlabel(texts["x"], fontsize=SMALL)
    axes.set_ylabel(texts["y"], fontsize=SMALL)
    axes.tick_params(labelsize=SMALL)
    return figure


def reliability_figure(evaluation: Evaluation, texts: Mapping[str, str] = RELIABILITY_TEXTS) -> Figure:
    """Observed pneumonia frequency against the predicted probability, per bin, each point with its count."""
    figure = Figure(figsize=(4, 3.6), layout="constrained")
    axes = figure.subplots()
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label=texts["perfect"])
    bins = evaluation.reliability()
    axes.plot(bins["predicted"], bins["observed"], marker="o", label=texts["yours"])
    for x, y, count in zip(bins["predicted"], bins["observed"], bins["count"], strict=True):
        # above its point, so that a count near 0 never sits on the axis's numbers
        axes.annotate(str(count), (x, y), textcoords="offset points", xytext=(0, 5), ha="center", fontsize=7)
    axes.set_xlim(-0.02, 1.02)
    axes.set_ylim(-0.02, 1.02)
    axes.set_xlabel(texts["x"], fontsize=SMALL)
    axes.set_ylabel(texts["y"], fontsize=SMALL)
    axes.legend(loc="lower right", fontsize=SMALL)
    axes.set_title(texts["title"], fontsize=SMALL, wrap=True)
    axes.tick_params(labelsize=SMALL)
    return figure
