"""Temperature scaling and the decision threshold, both fitted on validation only."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

from cxr_pneumonia.model import calibrated_probability


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising the validation negative log-likelihood (Guo et al. 2017)."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)

    def negative_log_likelihood(log_temperature: float) -> float:
        scaled = logits / np.exp(log_temperature)
        # log(1 + exp(-|z|)) form keeps large logits finite
        return float(np.mean(np.logaddexp(0.0, scaled) - labels * scaled))

    result = minimize_scalar(negative_log_likelihood, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(result.x))


def youden_threshold(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The probability threshold maximising sensitivity + specificity - 1 on validation."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    candidates = np.unique(probabilities)
    best_threshold, best_score = 0.5, -np.inf
    for threshold in candidates:
        predicted = probabilities >= threshold
        score = predicted[labels].mean() + (~predicted[~labels]).mean() - 1.0
        if score > best_score:
            best_threshold, best_score = float(threshold), score
    return best_threshold


def calibrate(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Temperature and threshold (on calibrated probabilities) from validation logits."""
    temperature = fit_temperature(logits, labels)
    threshold = youden_threshold(calibrated_probability(logits, temperature), labels)
    return temperature, threshold
