"""Changes of acquisition, the stated prevalence and the UNCERTAIN band, on real images and crafted scores."""

import numpy as np
import pytest

from cxr_pneumonia.acquisition import CHANGES, HELD_OUT_CHANGES, TRAINING_CHANGES, apply_change, random_acquisition
from cxr_pneumonia.imaging import read_image_file
from cxr_pneumonia.model import Prediction, answer, probability_at_prevalence
from training.calibration import balanced_source_weights, uncertain_band


@pytest.fixture(scope="module")
def chest(mini_data_dir) -> np.ndarray:
    """A real decoded chest X-ray."""
    return read_image_file(next((mini_data_dir / "test" / "NORMAL").iterdir()))


@pytest.mark.parametrize("name", list(CHANGES))
def test_each_change_is_the_identity_at_severity_0_and_seeded(chest, name):
    assert np.array_equal(apply_change(name, chest, 0, np.random.default_rng(1)), chest)
    first = apply_change(name, chest, 2, np.random.default_rng(5))
    again = apply_change(name, chest, 2, np.random.default_rng(5))
    assert np.array_equal(first, again)
    assert first.ndim == 2 and first.dtype == np.float32
    assert 0.0 <= first.min() and first.max() <= 1.0
    assert first.shape != chest.shape or not np.allclose(first, chest, atol=1e-3)


@pytest.mark.parametrize("name", ["rotation", "zoom_out", "crop", "phone_photo"])
def test_geometric_changes_move_a_box_mask_with_the_image(chest, name):
    mask = np.zeros_like(chest)
    mask[100:200, 100:200] = 1.0
    stacked = np.stack([chest, mask], axis=-1)
    changed = apply_change(name, stacked, 2, np.random.default_rng(3))
    alone = apply_change(name, chest, 2, np.random.default_rng(3))
    assert np.array_equal(changed[..., 0], alone)
    assert changed[..., 1].max() > 0.5 and not np.array_equal(changed[..., 1], mask)


def test_photometric_changes_leave_the_mask_alone(chest):
    mask = (np.arange(chest.size).reshape(chest.shape) % 7 == 0).astype(np.float32)
    changed = apply_change("edge_enhancement", np.stack([chest, mask], axis=-1), 2, np.random.default_rng(0))
    assert np.array_equal(changed[..., 1], mask)


def test_training_draws_only_its_kinds_and_keeps_the_rest_out(chest):
    assert set(TRAINING_CHANGES).isdisjoint(HELD_OUT_CHANGES)
    assert set(TRAINING_CHANGES) | set(HELD_OUT_CHANGES) == set(CHANGES)
    unchanged = random_acquisition(chest, np.random.default_rng(0), probability=0.0)
    assert unchanged is chest
    drawn = random_acquisition(chest, np.random.default_rng(0), probability=1.0)
    assert drawn.shape != chest.shape or not np.allclose(drawn, chest)


def test_prevalence_moves_the_odds_by_the_ratio_of_prior_odds():
    # 0.8 at 50 %: odds 4. At 5 %, prior odds 1/19: odds 4/19, probability 4/23.
    assert probability_at_prevalence(0.8, 0.05) == pytest.approx(4 / 23)
    # At 30 %: odds 4 x 3/7 = 12/7, probability 12/19.
    assert probability_at_prevalence(0.8, 0.3) == pytest.approx(12 / 19)
    assert probability_at_prevalence(0.8, 0.5) == pytest.approx(0.8)
    # From a model calibrated at 20 %: odds 1/4 there, 1 at 50 %.
    assert probability_at_prevalence(0.2, 0.5, calibrated_prevalence=0.2) == pytest.approx(0.5)
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError):
            probability_at_prevalence(0.5, bad)


def test_a_prediction_without_a_stated_prevalence_keeps_its_probability():
    assert Prediction(0.7, 0.5).probability_at(0.05) == 0.7
    assert Prediction(0.7, 0.5, calibrated_prevalence=0.5).probability_at(0.05) == pytest.approx(
        (0.7 / 0.3 / 19) / (1 + 0.7 / 0.3 / 19))


def test_answers_are_uncertain_inside_the_band_only():
    band = (0.3, 0.8)
    assert answer(0.29, 0.5, band) == "NORMAL"
    assert answer(0.3, 0.5, band) == "UNCERTAIN"
    assert answer(0.79, 0.5, band) == "UNCERTAIN"
    assert answer(0.8, 0.5, band) == "PNEUMONIA"
    assert answer(0.6, 0.5, None) == "PNEUMONIA"


def test_the_band_is_the_narrowest_that_leaves_only_correct_answers_outside():
    scores = np.array([0.05, 0.1, 0.2, 0.35, 0.45, 0.55, 0.6, 0.7, 0.9, 0.95])
    labels = np.array([0, 0, 0, 1, 0, 1, 0, 1, 1, 1])
    # At 0.5 the errors are 0.35 (a pneumonia called normal) and 0.6 (a normal called pneumonia).
    low, high = uncertain_band(scores, labels, 0.5, minimum=0.97)
    assert (low, high) == pytest.approx((0.275, 0.65))
    # With 80 % accuracy enough, 8 of the 10 answers being right outside needs no band at all.
    low, high = uncertain_band(scores, labels, 0.5, minimum=0.8)
    assert low == high == pytest.approx(0.5)


def test_the_band_holds_on_every_source():
    scores = np.array([0.1, 0.4, 0.45, 0.9, 0.1, 0.2, 0.3, 0.9])
    labels = np.array([0, 1, 0, 1, 0, 0, 0, 1])
    sources = ["a"] * 4 + ["b"] * 4
    # Source a errs at 0.4 (threshold 0.42): the band must cover it although source b is perfect.
    low, high = uncertain_band(scores, labels, 0.42, sources, minimum=0.97)
    assert low <= 0.4 < 0.42 <= high
    assert not low <= 0.3 < high


def test_calibration_weights_put_half_of_each_source_on_each_class():
    labels = np.array([1, 1, 1, 0, 1, 0])
    weights = balanced_source_weights(labels, ["a", "a", "a", "a", "b", "b"])
    assert weights.sum() == pytest.approx(1.0)
    assert weights[:3].sum() == pytest.approx(0.25) and weights[3] == pytest.approx(0.25)
    assert weights[4] == pytest.approx(0.25) and weights[5] == pytest.approx(0.25)
