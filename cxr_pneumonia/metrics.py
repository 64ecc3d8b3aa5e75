"""Binary classification metrics with 95 % intervals, in plain NumPy."""

from __future__ import annotations

import math

import numpy as np

Z_95 = 1.959963984540054


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve: the chance a random positive outranks a random negative."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    positives, negatives = scores[labels], scores[~labels]
    if len(positives) == 0 or len(negatives) == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    # Each run of tied scores gets the mean of its 1-based positions (vectorised: the bootstrap calls this often).
    starts = np.r_[0, np.flatnonzero(np.diff(scores[order])) + 1]
    ends = np.r_[starts[1:], len(scores)]
    ranks = np.empty(len(scores), dtype=np.float64)
    ranks[order] = np.repeat((starts + 1 + ends) / 2, ends - starts)
    positive_rank_sum = ranks[labels].sum()
    n_pos, n_neg = len(positives), len(negatives)
    return float((positive_rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False-positive rates, true-positive rates and thresholds, from the highest score down."""
    labels = np.asarray(labels).astype(bool)
    thresholds = np.r_[np.inf, np.unique(scores)[::-1]]
    tpr = np.array([(scores[labels] >= t).mean() for t in thresholds])
    fpr = np.array([(scores[~labels] >= t).mean() for t in thresholds])
    return fpr, tpr, thresholds


def confusion(labels: np.ndarray, predicted: np.ndarray) -> dict[str, int]:
    """Counts of true/false positives/negatives (positive = pneumonia)."""
    labels = np.asarray(labels).astype(bool)
    predicted = np.asarray(predicted).astype(bool)
    return {
        "tp": int(np.sum(labels & predicted)),
        "fp": int(np.sum(~labels & predicted)),
        "tn": int(np.sum(~labels & ~predicted)),
        "fn": int(np.sum(labels & ~predicted)),
    }


def wilson_interval(successes: int, total: int) -> list[float]:
    """95 % Wilson score interval of a proportion."""
    if total == 0:
        return [float("nan"), float("nan")]
    proportion = successes / total
    denominator = 1 + Z_95**2 / total
    centre = (proportion + Z_95**2 / (2 * total)) / denominator
    half = Z_95 * math.sqrt(proportion * (1 - proportion) / total + Z_95**2 / (4 * total**2))
    return [max(0.0, centre - half / denominator), min(1.0, centre + half / denominator)]


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray, bins: int = 10,
                               weights: np.ndarray | None = None) -> float:
    """ECE over equal-width probability bins: mean |accuracy - confidence| weighted by bin size (by the bins' total
    weight when images carry weights)."""
    labels = np.asarray(labels, dtype=np.float64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    weights = np.ones(len(labels)) if weights is None else np.asarray(weights, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    indices = np.clip(np.digitize(probabilities, edges[1:-1], right=True), 0, bins - 1)
    error = 0.0
    for index in range(bins):
        members = indices == index
        if weights[members].sum() > 0:
            w = weights[members]
            gap = abs(np.average(labels[members], weights=w) - np.average(probabilities[members], weights=w))
            error += w.sum() / weights.sum() * gap
    return float(error)


def balanced_weights(labels: np.ndarray) -> np.ndarray:
    """Per-image weights giving each class half of the total: the images as if half showed pneumonia."""
    labels = np.asarray(labels).astype(bool)
    weights = np.zeros(len(labels))
    for members in (labels, ~labels):
        if members.any():
            weights[members] = 0.5 / members.sum()
    return weights


def balanced_ece(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """ECE with each class weighted to half: the calibration error at a 50 % prevalence."""
    return expected_calibration_error(labels, probabilities, weights=balanced_weights(labels))


def bootstrap_interval(labels: np.ndarray, scores: np.ndarray, statistic, rounds: int = 1000,
                       seed: int = 0) -> list[float]:
    """95 % percentile bootstrap interval of statistic(labels, scores), resampling images within each class."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    positives, negatives = np.flatnonzero(labels), np.flatnonzero(~labels)
    if len(positives) == 0 or len(negatives) == 0:
        return [float("nan"), float("nan")]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(rounds):
        sample = np.concatenate([rng.choice(positives, len(positives)), rng.choice(negatives, len(negatives))])
        values.append(statistic(labels[sample], scores[sample]))
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


def reliability_bins(labels: np.ndarray, probabilities: np.ndarray, bins: int) -> tuple[list, list, list]:
    """Mean predicted probability, observed frequency and count of each non-empty equal-width bin."""
    edges = np.linspace(0, 1, bins + 1)
    indices = np.clip(np.digitize(probabilities, edges[1:-1], right=True), 0, bins - 1)
    centres, observed, counts = [], [], []
    for index in range(bins):
        members = indices == index
        if members.any():
            centres.append(probabilities[members].mean())
            observed.append(labels[members].mean())
            counts.append(int(members.sum()))
    return centres, observed, counts


def delong_auc_interval(labels: np.ndarray, scores: np.ndarray, z: float = 1.959964) -> list[float]:
    """95 % interval of the AUC from DeLong, DeLong and Clarke-Pearson's variance ("Comparing the areas under two or
    more correlated receiver operating characteristic curves", Biometrics 1988): the variance of the placement
    values of the positives and of the negatives. Built on the logit scale (Pepe 2003), so that it stays inside
    (0, 1). NaN where it cannot bound anything: one class, fewer than two of either, or a perfect (or perfectly
    wrong) ranking, whose variance estimate is 0 however few the images."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    positives, negatives = scores[labels], scores[~labels]
    if len(positives) < 2 or len(negatives) < 2:
        return [float("nan"), float("nan")]
    comparisons = (positives[:, None] > negatives[None, :]) + 0.5 * (positives[:, None] == negatives[None, :])
    auc = comparisons.mean()
    variance = comparisons.mean(axis=1).var(ddof=1) / len(positives) + \
        comparisons.mean(axis=0).var(ddof=1) / len(negatives)
    if variance <= 0 or not 0 < auc < 1:
        return [float("nan"), float("nan")]
    centre, spread = np.log(auc / (1 - auc)), z * np.sqrt(variance) / (auc * (1 - auc))
    return [float(1 / (1 + np.exp(-(centre - spread)))), float(1 / (1 + np.exp(-(centre + spread))))]


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else float("nan")


def binary_report(labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> dict:
    """Every metric the evaluation reports, with 95 % intervals, at `threshold`."""
    labels = np.asarray(labels).astype(int)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    counts = confusion(labels, probabilities >= threshold)
    tp, fp, tn, fn = counts["tp"], counts["fp"], counts["tn"], counts["fn"]
    precision = _ratio(tp, tp + fp)
    sensitivity = _ratio(tp, tp + fn)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    return {
        "n": len(labels),
        "n_pneumonia": int(labels.sum()),
        "n_normal": int(len(labels) - labels.sum()),
        "threshold": float(threshold),
        "accuracy": _ratio(tp + tn, len(labels)),
        "auc": roc_auc(labels, probabilities),
        "sensitivity": sensitivity,
        "specificity": _ratio(tn, tn + fp),
        "precision": precision,
        "f1": f1,
        "ece": expected_calibration_error(labels, probabilities),
        "balanced_ece": balanced_ece(labels, probabilities) if 0 < labels.sum() < len(labels) else float("nan"),
        "confusion_matrix": {"labels": ["NORMAL", "PNEUMONIA"], "rows_true_cols_predicted": [[tn, fp], [fn, tp]]},
        "ci95": {
            "accuracy": wilson_interval(tp + tn, len(labels)),
            "sensitivity": wilson_interval(tp, tp + fn),
            "specificity": wilson_interval(tn, tn + fp),
            "precision": wilson_interval(tp, tp + fp),
            "auc": delong_auc_interval(labels, probabilities),
            "balanced_ece": bootstrap_interval(labels, probabilities, balanced_ece, rounds=300),
        },
    }


def _logit(probabilities: np.ndarray) -> np.ndarray:
    clipped = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-12, 1 - 1e-12)
    return np.log(clipped / (1 - clipped))


def uncertain_report(labels: np.ndarray, probabilities: np.ndarray, threshold: float,
                     band: tuple[float, float] | None) -> dict:
    """The share answered UNCERTAIN (inside [low, high)) and the accuracy of the other answers at `threshold`."""
    labels = np.asarray(labels).astype(bool)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    inside = np.zeros(len(labels), dtype=bool) if band is None else (probabilities >= band[0]) & (
        probabilities < band[1])
    correct = (probabilities >= threshold) == labels
    answered = ~inside
    return {
        "uncertain_band": None if band is None else list(band),
        "n_uncertain": int(inside.sum()),
        "uncertain_share": float(inside.mean()) if len(labels) else float("nan"),
        "accuracy_outside_band": float(correct[answered].mean()) if answered.any() else float("nan"),
        "ci95_accuracy_outside_band": wilson_interval(int(correct[answered].sum()), int(answered.sum())),
    }


def risk_coverage(labels: np.ndarray, probabilities: np.ndarray, threshold: float, points: int = 50
                  ) -> dict[str, list[float]]:
    """Error rate of the answers at `threshold` kept when only the most confident share (farthest from the
    threshold in log-odds) is answered, at `points` coverages from 1/points to 1."""
    labels = np.asarray(labels).astype(bool)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    order = np.argsort(-np.abs(_logit(probabilities) - _logit(np.array([threshold]))[0]), kind="stable")
    wrong = ((probabilities >= threshold) != labels)[order]
    coverages = np.linspace(1 / points, 1.0, points)
    kept = np.maximum(1, np.round(coverages * len(labels)).astype(int))
    return {"coverage": [float(c) for c in kept / len(labels)],
            "risk": [float(wrong[:k].mean()) for k in kept]}
