"""Evaluation metrics against values computed by hand on crafted cases."""

import math

import numpy as np
import pytest

from cxr_pneumonia.metrics import (
    binary_report,
    delong_auc_interval,
    expected_calibration_error,
    roc_auc,
    wilson_interval,
)
from training.calibration import fit_platt, sensitivity_first_threshold, worst_source_threshold, youden_threshold

# 4 pneumonia (1) and 4 normal (0) images.
LABELS = np.array([1, 1, 1, 1, 0, 0, 0, 0])
PROBS = np.array([0.9, 0.8, 0.6, 0.3, 0.7, 0.4, 0.2, 0.1])


def test_report_matches_hand_computed_values():
    report = binary_report(LABELS, PROBS, threshold=0.5)
    # At 0.5: TP = 3 (0.9, 0.8, 0.6), FN = 1 (0.3), FP = 1 (0.7), TN = 3.
    assert report["confusion_matrix"]["rows_true_cols_predicted"] == [[3, 1], [1, 3]]
    assert report["accuracy"] == pytest.approx(6 / 8)
    assert report["sensitivity"] == pytest.approx(3 / 4)
    assert report["specificity"] == pytest.approx(3 / 4)
    assert report["precision"] == pytest.approx(3 / 4)
    assert report["f1"] == pytest.approx(3 / 4)
    # Pairs (pos, neg) with pos > neg: 0.9,0.8 beat all 4; 0.6 beats 3; 0.3 beats 2 -> 13 / 16.
    assert report["auc"] == pytest.approx(13 / 16)
    assert report["n"] == 8 and report["n_pneumonia"] == 4


def test_auc_counts_ties_as_half():
    assert roc_auc(np.array([1, 0]), np.array([0.5, 0.5])) == pytest.approx(0.5)
    assert roc_auc(np.array([1, 1, 0]), np.array([0.7, 0.5, 0.5])) == pytest.approx(0.75)


def test_ece_by_hand():
    # Bin (0.1, 0.2]: p=0.2, label 0 -> gap 0.2; bin (0.8, 0.9]: p=0.9 twice, labels 1,0 -> gap 0.4.
    ece = expected_calibration_error(np.array([0, 1, 0]), np.array([0.2, 0.9, 0.9]))
    assert ece == pytest.approx((1 / 3) * 0.2 + (2 / 3) * 0.4)


def test_wilson_interval_known_value():
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4)
    assert high == pytest.approx(0.9433, abs=1e-4)


def test_youden_threshold_separates_a_separable_case():
    probabilities = np.array([0.1, 0.2, 0.35, 0.6, 0.7, 0.9])
    labels = np.array([0, 0, 0, 1, 1, 1])
    threshold = youden_threshold(probabilities, labels)
    assert threshold == pytest.approx(0.475)


def test_platt_scaling_recovers_the_scale_and_shift_of_miscalibrated_logits():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2, 4000)
    labels = (rng.random(4000) < 1 / (1 + np.exp(-true_logits))).astype(int)
    temperature, offset = fit_platt(3.0 * true_logits - 6.0, labels)  # three times too confident, shifted by -6
    assert temperature == pytest.approx(3.0, rel=0.15)
    assert offset == pytest.approx(2.0, abs=0.3)  # (z - 6) / 3 + 2 = z / 3
    assert not math.isnan(temperature)


def test_sensitivity_first_threshold_keeps_every_source_sensitive():
    probabilities = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.6, 0.65, 0.7, 0.9])
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 1, 1])
    sources = ["a"] * 8 + ["b"] * 4
    # halfway between the lowest score kept and the next lower one: no image sits on the threshold
    assert sensitivity_first_threshold(probabilities, labels, sources, minimum=1.0) == pytest.approx(0.45)
    assert sensitivity_first_threshold(probabilities, labels, sources, minimum=0.5) == pytest.approx(0.675)


def test_threshold_and_temperature_weight_every_source_equally():
    from training.calibration import source_weights

    # Source "a" separates at 0.5; source "b" needs 0.7. Pooled, a's images outvote b's.
    probabilities = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.6, 0.65, 0.7, 0.9])
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 1, 1])
    sources = ["a"] * 8 + ["b"] * 4
    assert youden_threshold(probabilities, labels) == pytest.approx(0.45)
    assert youden_threshold(probabilities, labels, sources) == pytest.approx(0.675)  # mean J: a 0.5, b 1.0
    weights = source_weights(sources)
    assert weights[:8].sum() == pytest.approx(0.5) and weights[8:].sum() == pytest.approx(0.5)


def test_the_delong_interval_covers_the_true_auc_about_95_times_in_100():
    """Binormal scores whose true AUC is Phi(1 / sqrt(2)) = 0.760: 400 draws of 40 positives and 60 negatives."""
    from scipy.stats import norm

    truth = norm.cdf(1 / np.sqrt(2))
    rng = np.random.default_rng(3)
    covered = 0
    for _ in range(400):
        scores = np.r_[rng.normal(1, 1, 40), rng.normal(0, 1, 60)]
        low, high = delong_auc_interval(np.r_[np.ones(40), np.zeros(60)], scores)
        covered += low <= truth <= high
    assert 0.91 <= covered / 400 <= 0.98


def test_a_perfect_ranking_on_few_images_gets_no_interval_rather_than_a_point():
    labels = np.r_[np.ones(20), np.zeros(20)]
    scores = np.r_[np.linspace(0.6, 0.9, 20), np.linspace(0.1, 0.4, 20)]
    assert roc_auc(labels, scores) == 1.0
    assert all(np.isnan(delong_auc_interval(labels, scores)))
    low, high = delong_auc_interval(labels, np.r_[scores[:19], 0.3, scores[20:]])  # one pneumonia ranked low
    assert low < roc_auc(labels, np.r_[scores[:19], 0.3, scores[20:]]) < high < 1


def test_the_v3_threshold_maximises_the_worst_sources_balanced_accuracy_at_sensitivity_093():
    """Source a separates well; source b's normals reach 0.6: the threshold keeps both sensitivities at or above
    0.93 and, among those, the highest worst balanced accuracy, not the smallest source's sensitivity at any cost."""
    a_pos, a_neg = np.linspace(0.55, 0.95, 30), np.linspace(0.05, 0.45, 30)
    b_pos, b_neg = np.linspace(0.5, 0.95, 30), np.linspace(0.1, 0.6, 30)
    probabilities = np.r_[a_pos, a_neg, b_pos, b_neg]
    labels = np.r_[np.ones(30), np.zeros(30), np.ones(30), np.zeros(30)]
    sources = ["a"] * 60 + ["b"] * 60
    threshold = worst_source_threshold(probabilities, labels, sources)
    called = probabilities >= threshold
    for source in ("a", "b"):
        mine = np.array(sources) == source
        assert called[mine & (labels == 1)].mean() >= 0.93
    candidates = np.unique(probabilities)
    def worst(t):
        c = probabilities >= t
        return min(((c & (labels == 1) & (np.array(sources) == s)).sum() / 30
                    + (~c & (labels == 0) & (np.array(sources) == s)).sum() / 30) / 2 for s in ("a", "b"))
    feasible = [t for t in candidates if all(((probabilities >= t) & (labels == 1) & (np.array(sources) == s)).sum()
                                             / 30 >= 0.93 for s in ("a", "b"))]
    assert worst(threshold) == pytest.approx(max(worst(t) for t in feasible))
