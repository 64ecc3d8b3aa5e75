"""Calibration (a temperature and an offset) and the decision threshold, both fitted on validation only, every
source counting the same (the app does not know where an image comes from, so one of each serves all)."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from cxr_pneumonia.metrics import balanced_weights
from cxr_pneumonia.model import calibrated_probability

MIN_SENSITIVITY = 0.95
# From v3.0.0: the floor on every source's sensitivity under which no threshold is chosen.
MIN_SOURCE_SENSITIVITY = 0.93
THRESHOLD_RULE = (f"the threshold maximising the worst source's validation balanced accuracy among those at which "
                  f"the validation sensitivity of every source is at least {MIN_SOURCE_SENSITIVITY:.2f} (the highest "
                  "of the best, so no source's sensitivity is chased at the others' specificity); the threshold "
                  "maximising the mean over sources of Youden's J if none reaches it; placed halfway between the "
                  "lowest validation score called pneumonia and the next lower one")
TEMPERATURE_RULE = ("Platt scaling, sigmoid(logit / temperature + offset), minimising the validation negative "
                    "log-likelihood with each class weighted to half within each source and the sources weighted "
                    "equally, so that the probability is for a 50 % prevalence")
CALIBRATED_PREVALENCE = 0.5
MIN_ACCURACY_OUTSIDE_BAND = 0.97
BAND_RULE = (f"the narrowest band [low, high) around the threshold (fewest validation images inside, sources "
             f"weighted equally) outside which the validation accuracy of every source is at least "
             f"{MIN_ACCURACY_OUTSIDE_BAND:.2f}, the validation images counted as they are and under each change of "
             "acquisition of the robustness suite at severity 2 but the negative and the phone photo (pooled per "
             "source); inside it the answer is UNCERTAIN")


def source_weights(sources: list[str] | np.ndarray) -> np.ndarray:
    """Per-image weights that give every source the same total (1 / number of sources)."""
    sources = np.asarray(sources)
    names, inverse, counts = np.unique(sources, return_inverse=True, return_counts=True)
    return 1.0 / (counts[inverse] * len(names))


def balanced_source_weights(labels: np.ndarray, sources: list[str] | np.ndarray | None) -> np.ndarray:
    """Per-image weights giving each source the same total and, within it, each class half of it."""
    labels = np.asarray(labels).astype(bool)
    weights = np.zeros(len(labels))
    groups = source_groups(labels, None if sources is None else list(sources))
    for group in groups:
        weights[group] = balanced_weights(labels[group]) / len(groups)
    return weights


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


def worst_source_threshold(probabilities: np.ndarray, labels: np.ndarray, sources: list[str] | None = None,
                           minimum: float = MIN_SOURCE_SENSITIVITY) -> float:
    """The threshold maximising the lowest balanced accuracy over sources, among those keeping every source's
    sensitivity at least `minimum` (see THRESHOLD_RULE)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    groups = source_groups(labels, sources)
    candidates = np.unique(probabilities)
    best_index, best_score = None, -np.inf
    for index, threshold in enumerate(candidates):
        predicted = probabilities >= threshold
        sensitivities = [predicted[group & labels].mean() for group in groups]
        if min(sensitivities) < minimum:
            continue
        score = min((sensitivity + (~predicted[group & ~labels]).mean()) / 2
                    for sensitivity, group in zip(sensitivities, groups, strict=True))
        if score >= best_score:
            best_index, best_score = index, score
    if best_index is None:
        return youden_threshold(probabilities, labels, sources)
    return just_below(candidates, best_index)


def calibrate(logits: np.ndarray, labels: np.ndarray, sources: list[str] | None = None) -> tuple[float, float, float]:
    """Temperature, offset and threshold (on calibrated probabilities) from validation logits, for a 50 %
    prevalence in every source (see TEMPERATURE_RULE)."""
    temperature, offset = fit_platt(logits, labels, balanced_source_weights(labels, sources))
    threshold = worst_source_threshold(calibrated_probability(logits, temperature, offset), labels, sources)
    return temperature, offset, threshold


def uncertain_band(probabilities: np.ndarray, labels: np.ndarray, threshold: float, sources: list[str] | None = None,
                   minimum: float = MIN_ACCURACY_OUTSIDE_BAND) -> tuple[float, float]:
    """The narrowest [low, high) containing the threshold outside which every source's accuracy (answers at
    `threshold`) is at least `minimum` (see BAND_RULE); its edges sit halfway between validation scores."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    scores = np.unique(probabilities)
    edges = np.r_[0.0, (scores[1:] + scores[:-1]) / 2, 1.0]
    lows, highs = edges[edges <= threshold], edges[edges >= threshold]
    correct = (probabilities >= threshold) == labels
    feasible = np.ones((len(lows), len(highs)), dtype=bool)
    inside_share = np.zeros((len(lows), len(highs)))
    groups = source_groups(labels, sources)
    for group in groups:
        # Images (and correct answers) of the group below each low and at or above each high.
        everyone, right = np.sort(probabilities[group]), np.sort(probabilities[group & correct])
        below = np.searchsorted(everyone, lows, side="left")
        correct_below = np.searchsorted(right, lows, side="left")
        above = len(everyone) - np.searchsorted(everyone, highs, side="left")
        correct_above = len(right) - np.searchsorted(right, highs, side="left")
        outside = below[:, None] + above[None, :]
        correct_outside = correct_below[:, None] + correct_above[None, :]
        feasible &= (outside == 0) | (correct_outside >= minimum * outside)
        inside_share += (1.0 - outside / len(everyone)) / len(groups)
    inside_share[~feasible] = np.inf
    low_index, high_index = np.unravel_index(np.argmin(inside_share), inside_share.shape)
    return float(lows[low_index]), float(highs[high_index])
