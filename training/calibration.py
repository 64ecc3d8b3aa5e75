"""Calibration (a temperature and an offset) and the decision threshold, both fitted on validation only, every
source counting the same (the app does not know where an image comes from, so one of each serves all)."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from cxr_pneumonia.model import calibrated_probability

MIN_SENSITIVITY = 0.95
THRESHOLD_RULE = (f"the highest threshold at which the validation sensitivity of every source is at least "
                  f"{MIN_SENSITIVITY:.2f} (missing a pneumonia costs more than a false alarm); the threshold "
                  "maximising the mean over sources of Youden's J if none reaches it; placed halfway between the "
                  "lowest validation score called pneumonia and the next lower one")
TEMPERATURE_RULE = ("Platt scaling, sigmoid(logit / temperature + offset), minimising the mean over sources of the "
                    "validation negative log-likelihood")


def source_weights(sources: list[str] | np.ndarray) -> np.ndarray:
    """Per-image weights that give every source the same total (1 / number of sources)."""
    sources = np.asarray(sources)
    names, inverse, counts = np.unique(sources, return_inverse=True, return_counts=True)
    return 1.0 / (counts[inverse] * len(names))


def fit_platt(logits: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> tuple[float, float]:
    """The temperature and offset minimising the (weighted) validation negative log-likelihood (Platt 1999; a
    temperature alone, Guo et al. 2017, cannot undo a shifted logit)."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    weights = np.full(len(logits), 1.0 / len(logits)) if weights is None else np.asarray(weights, np.float64)

    def negative_log_likelihood(parameters: np.ndarray) -> float:
        scaled = logits / np.exp(parameters[0]) + parameters[1]
        # log(1 + exp(z)) - y z, with logaddexp keeping large logits finite
        return float(np.sum(weights * (np.logaddexp(0.0, scaled) - labels * scaled)) / weights.sum())

    result = minimize(negative_log_likelihood, np.zeros(2), method="Nelder-Mead",
                      options={"xatol": 1e-6, "fatol": 1e-9})
    return float(np.exp(result.x[0])), float(result.x[1])


def source_groups(labels: np.ndarray, sources: list[str] | None) -> list[np.ndarray]:
    """A boolean mask per source (one mask of everything without sources)."""
    sources = np.zeros(len(labels), dtype=int) if sources is None else np.asarray(sources)
    return [sources == name for name in np.unique(sources)]


def just_below(scores: np.ndarray, index: int) -> float:
    """Halfway between the sorted distinct scores[index] and the next lower one (or 0): the same validation
    decisions as scores[index], but no image sits on the threshold, where a logit's last digits, which change
    with the batch it is computed in (the app computes one image at a time), would decide."""
    return float((scores[index] + (scores[index - 1] if index > 0 else 0.0)) / 2)


def youden_threshold(probabilities: np.ndarray, labels: np.ndarray, sources: list[str] | None = None) -> float:
    """The probability threshold maximising Youden's J on validation, averaged over sources when given."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    groups = source_groups(labels, sources)
    candidates = np.unique(probabilities)
    best_index, best_score = 0, -np.inf
    for index, threshold in enumerate(candidates):
        predicted = probabilities >= threshold
        score = np.mean([predicted[group & labels].mean() + (~predicted[group & ~labels]).mean() - 1.0
                         for group in groups])
        if score > best_score:
            best_index, best_score = index, score
    return just_below(candidates, best_index)


def sensitivity_first_threshold(probabilities: np.ndarray, labels: np.ndarray, sources: list[str] | None = None,
                                minimum: float = MIN_SENSITIVITY) -> float:
    """The highest threshold whose sensitivity is at least `minimum` on every source (see THRESHOLD_RULE)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    groups = source_groups(labels, sources)
    candidates = np.unique(probabilities)
    for index in range(len(candidates) - 1, -1, -1):
        predicted = probabilities >= candidates[index]
        if all(predicted[group & labels].mean() >= minimum for group in groups):
            return just_below(candidates, index)
    return youden_threshold(probabilities, labels, sources)


def calibrate(logits: np.ndarray, labels: np.ndarray, sources: list[str] | None = None) -> tuple[float, float, float]:
    """Temperature, offset and threshold (on calibrated probabilities) from validation logits, sources weighted
    equally."""
    weights = None if sources is None else source_weights(sources)
    temperature, offset = fit_platt(logits, labels, weights)
    threshold = sensitivity_first_threshold(calibrated_probability(logits, temperature, offset), labels, sources)
    return temperature, offset, threshold
