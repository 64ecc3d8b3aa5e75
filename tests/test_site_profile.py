"""Site profiles: the order-statistic rule on crafted scores, the coverage it promises, and the document's checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cxr_pneumonia.site_profile import (
    ModelIdentity,
    ProfileError,
    ProfileMismatchError,
    SiteProfile,
    fit_profile,
    moved_band,
    normals_needed,
    order_statistic_threshold,
    without_date,
)

MODEL = ModelIdentity("v9.9.9", "ab" * 32, 0.4, (0.2, 0.8))


def test_the_threshold_is_the_k_th_lowest_normal():
    scores = np.arange(1, 31) / 100  # 30 normals: 0.01 ... 0.30, shuffled below
    threshold, k = order_statistic_threshold(np.random.default_rng(0).permutation(scores), 0.9)
    assert k == math.ceil(31 * 0.9) == 28
    assert threshold == 0.28
    assert int((scores < threshold).sum()) == 27  # the k-th itself scores at the threshold: PNEUMONIA


def test_a_target_the_normals_barely_allow_takes_the_highest():
    threshold, k = order_statistic_threshold(np.linspace(0.1, 0.5, 30), 0.95)  # k = ceil(31 x 0.95) = 30
    assert k == 30 and threshold == pytest.approx(0.5)


def test_29_normals_are_too_few_and_the_error_says_how_many_are_needed():
    with pytest.raises(ProfileError, match="at least 30") as refused:
        order_statistic_threshold(np.linspace(0, 1, 29), 0.9)
    assert refused.value.code == "too_few_normals" and refused.value.values["needed"] == 30


def test_a_high_target_needs_more_normals():
    assert normals_needed(0.9) == 30
    assert normals_needed(0.99) == 99  # ceil(100 x 0.99) = 99 <= 99
    with pytest.raises(ProfileError):
        order_statistic_threshold(np.linspace(0, 1, 98), 0.99)


def test_a_new_normal_is_called_normal_with_the_promised_probability():
    """Split conformal coverage: over many sites and draws, the specificity on fresh normals averages k / (n + 1),
    whatever the distribution, and falls below the one-sided 95 % lower bound about one time in twenty."""
    rng = np.random.default_rng(1)
    realised, below_bound = [], 0
    for _ in range(2000):
        shape = rng.uniform(0.5, 3)  # a different score distribution at every site
        normals, fresh = rng.beta(shape, 4, 30), rng.beta(shape, 4, 2000)
        profile = fit_profile("site", MODEL, 0.9, normals, np.array([]), 0)
        specificity = float((fresh < profile.threshold).mean())
        realised.append(specificity)
        below_bound += specificity < profile.specificity_lower_bound
    assert profile.expected_specificity == pytest.approx(28 / 31)
    assert np.mean(realised) == pytest.approx(28 / 31, abs=0.005)
    assert 0.03 <= below_bound / 2000 <= 0.07


def test_sensitivity_is_reported_from_10_pneumonias_and_warned_about_under_90_percent():
    normals = np.linspace(0.01, 0.3, 40)
    assert fit_profile("site", MODEL, 0.9, normals, np.full(9, 0.9), 0).sensitivity is None
    profile = fit_profile("site", MODEL, 0.9, normals, np.r_[np.full(8, 0.9), np.full(2, 0.01)], 3)
    assert profile.sensitivity == pytest.approx(0.8) and "low_sensitivity" in profile.warnings
    low, high = profile.sensitivity_interval
    assert low < 0.8 < high
    assert "few_normals" in profile.warnings and profile.n_refused == 3 and profile.n_pneumonia == 10


def test_the_band_keeps_its_widths_in_logit_space():
    def logit(p: float) -> float:
        return math.log(p / (1 - p))

    low, high = moved_band((0.2, 0.8), 0.4, 0.7)
    assert logit(low) - logit(0.7) == pytest.approx(logit(0.2) - logit(0.4))
    assert logit(high) - logit(0.7) == pytest.approx(logit(0.8) - logit(0.4))


def profile() -> SiteProfile:
    return fit_profile("St Elsewhere", MODEL, 0.9, np.linspace(0.01, 0.6, 60), np.linspace(0.3, 0.99, 20), 2)


def test_a_profile_round_trips_through_json():
    fitted = profile()
    assert SiteProfile.from_json(fitted.to_json()) == fitted


def test_an_edited_profile_is_refused():
    document = profile().to_json()
    document["threshold"] = 0.99
    with pytest.raises(ProfileError) as refused:
        SiteProfile.from_json(document)
    assert refused.value.code == "tampered"


@pytest.mark.parametrize("broken", [[], {"site": "x"}, {**profile().to_json(), "extra": 1}])
def test_a_malformed_profile_is_refused(broken):
    with pytest.raises(ProfileError):
        SiteProfile.from_json(broken)


def test_a_profile_of_another_model_is_a_mismatch():
    fitted = profile()
    fitted.check_model("v9.9.9", "ab" * 32)
    with pytest.raises(ProfileMismatchError, match=r"v9\.9\.9"):
        fitted.check_model("v3.0.0", "ab" * 32)
    with pytest.raises(ProfileMismatchError):
        fitted.check_model("v9.9.9", "cd" * 32)


def test_the_same_scores_give_the_same_profile_dates_aside():
    assert without_date(profile()) == without_date(profile())


@pytest.mark.parametrize(("site", "target"), [("", 0.9), ("x" * 65, 0.9), ("site", 0.49), ("site", 0.995)])
def test_bad_site_names_and_targets_are_refused(site, target):
    with pytest.raises(ProfileError):
        fit_profile(site, MODEL, target, np.linspace(0, 1, 200), np.array([]), 0)


def test_the_command_line_fits_the_same_rule_on_a_folder(tmp_path):
    """python -m training.site_profile on 35 real normal X-rays: the threshold is the k-th lowest probability of
    those the gate accepts, as the app computes them."""
    import json

    from cxr_pneumonia.model import load_model_dir
    from cxr_pneumonia.site_profile import rank_for
    from tests.labelled_zips import labelled_folder
    from training import site_profile as cli
    from training.evaluate import predict_and_gate_paths

    folder = labelled_folder(tmp_path / "site", per_class=35)
    for pneumonia in (folder / "PNEUMONIA").iterdir():
        pneumonia.unlink()
    cli.main(["--model", "model", "--data", str(folder), "--site", "Ward B", "--out", str(tmp_path / "p.json")])
    profile = SiteProfile.from_json(json.loads((tmp_path / "p.json").read_text()))
    paths = sorted(str(path) for path in (folder / "NORMAL").iterdir())
    probabilities, refused = predict_and_gate_paths(load_model_dir("model"), paths)
    accepted = np.sort(probabilities[~refused])
    assert profile.n_normal == len(accepted) and profile.n_refused == int(refused.sum())
    assert profile.threshold == accepted[rank_for(len(accepted), 0.9) - 1]
    assert profile.site == "Ward B" and profile.n_pneumonia == 0
