"""Explanation-quality measures against hand-computed values on crafted maps, boxes and models, and the
randomisation on a real (tiny) trained model."""

import keras
import numpy as np
import pytest

from cxr_pneumonia.explanation_quality import (
    Box,
    blurred_baseline,
    box_mask,
    cascade_groups,
    centre_map,
    mass_ratio,
    mass_share,
    otsu_iou,
    otsu_threshold,
    passes_randomisation,
    perturbation_curves,
    pointing_game_hit,
    randomised_copy,
    rank_correlation,
    top_groups,
)
from cxr_pneumonia.model import load_model_dir


def test_box_mask_scales_boxes_from_the_image_to_the_map():
    # A 20x20 box at x=20 in a 40x40 image is the top-right quarter: 2x2 cells of a 4x4 map.
    mask = box_mask([Box(x=20, y=0, width=20, height=20)], 40, 40, 4, 4)
    expected = np.zeros((4, 4), bool)
    expected[0:2, 2:4] = True
    assert np.array_equal(mask, expected)


def test_box_mask_is_the_union_of_boxes():
    mask = box_mask([Box(0, 0, 1, 1), Box(3, 3, 1, 1)], 4, 4, 4, 4)
    assert mask.sum() == 2 and mask[0, 0] and mask[3, 3]


def test_pointing_game_hit_and_miss():
    mask = np.zeros((4, 4), bool)
    mask[0:2, 0:2] = True
    saliency = np.zeros((4, 4))
    saliency[1, 1] = 1.0
    assert pointing_game_hit(saliency, mask)
    saliency[3, 3] = 2.0
    assert not pointing_game_hit(saliency, mask)


def test_mass_ratio_against_hand_computed_values():
    mask = np.zeros((4, 4), bool)
    mask[0:2, 0:2] = True  # a quarter of the map
    saliency = np.zeros((4, 4))
    saliency[0, 0], saliency[3, 3] = 3.0, 1.0  # 3/4 of the mass inside
    assert mass_ratio(saliency, mask) == pytest.approx(0.75 / 0.25)
    assert mass_ratio(np.ones((4, 4)), mask) == pytest.approx(1.0)  # uniform: no better than chance
    assert np.isnan(mass_ratio(np.zeros((4, 4)), mask))


def test_otsu_threshold_splits_a_two_level_map():
    values = np.r_[np.full(60, 0.1), np.full(40, 0.9)]
    threshold = otsu_threshold(values)
    assert 0.1 < threshold <= 0.9
    assert np.sum(values > threshold) == 40


def test_otsu_iou_against_a_hand_computed_value():
    mask = np.zeros((4, 4), bool)
    mask[0:2, 0:2] = True  # 4 cells
    saliency = np.full((4, 4), 0.1)
    saliency[0, 0:3] = 0.9  # 3 hot cells, 2 of them in the box
    assert otsu_iou(saliency, mask) == pytest.approx(2 / 5)  # intersection 2, union 4 + 3 - 2


def test_centre_map_peaks_at_the_centre():
    peak = np.unravel_index(np.argmax(centre_map(5, 5)), (5, 5))
    assert peak == (2, 2)


def test_mass_share_against_a_hand_computed_value():
    mask = np.zeros((4, 4), bool)
    mask[0:2, 0:2] = True
    saliency = np.zeros((4, 4))
    saliency[0, 0], saliency[3, 3] = 3.0, 1.0
    assert mass_share(saliency, mask) == pytest.approx(0.75)
    assert np.isnan(mass_share(saliency, np.zeros((4, 4), bool)))


def test_rank_correlation_of_maps():
    ramp = np.arange(16, dtype=float).reshape(4, 4)
    assert rank_correlation(ramp, ramp ** 3) == pytest.approx(1.0)  # same order, other values
    assert rank_correlation(ramp, -ramp) == pytest.approx(-1.0)
    assert rank_correlation(ramp, np.zeros((4, 4))) == 0.0  # a flat map ranks nothing
    assert passes_randomisation(-0.49) and not passes_randomisation(-0.5) and not passes_randomisation(0.9)


def small_cnn() -> keras.Model:
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(2, 3, name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="conv1_bn")(x)
    x = keras.layers.ReLU(name="conv1_relu")(x)
    x = keras.layers.Conv2D(2, 3, name="conv2")(x)
    x = keras.layers.ReLU(name="conv2_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(1, name="logit")(x))


def test_the_cascade_runs_from_the_logit_down_with_each_batch_normalisation_beside_its_layer():
    model = small_cnn()
    assert cascade_groups(model) == [("logit",), ("conv2",), ("conv1", "conv1_bn")]
    assert top_groups(model, "conv2_relu") == [("logit",), ("conv2",)]
    assert top_groups(model, "conv1_relu") == [("logit",), ("conv2",), ("conv1", "conv1_bn")]


def test_randomisation_changes_the_weights_it_names_and_no_others(tiny_model_dir):
    model = load_model_dir(tiny_model_dir).keras_model
    before = [weight.copy() for weight in model.get_weights()]
    named = [name for group in top_groups(model, load_model_dir(tiny_model_dir).config.gradcam_layer) for name in group]
    assert named[0] == "logit" and "last_conv" in named and "last_conv_bn" in named
    copy = randomised_copy(model, named, seed=3)
    for layer in copy.layers:
        for new, old in zip(layer.weights, model.get_layer(layer.name).weights, strict=True):
            changed = not np.array_equal(new.numpy(), old.numpy())
            assert changed == (layer.name in named), f"{layer.name}/{new.name}"
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), before, strict=True))  # served model intact
    # Drawn from the layers' own initialisers: Glorot-uniform kernel, zero bias, a batch normalisation reset.
    logit = copy.get_layer("logit")
    fan_in, fan_out = logit.kernel.shape
    assert np.abs(logit.kernel.numpy()).max() <= np.sqrt(6 / (fan_in + fan_out)) and not logit.bias.numpy().any()
    norm = copy.get_layer("last_conv_bn")
    assert (norm.gamma.numpy() == 1).all() and (norm.moving_variance.numpy() == 1).all()
    assert not norm.beta.numpy().any() and not norm.moving_mean.numpy().any()
    again = randomised_copy(model, named, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(copy.get_weights(), again.get_weights(), strict=True))


def region_mean_model() -> keras.Model:
    """A linear model of a 4x4 image whose output is the mean of its top-left 2x2 region."""
    inputs = keras.Input((4, 4, 1))
    output = keras.layers.Dense(1, use_bias=False, name="mean")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, output)
    weights = np.zeros((16, 1), np.float32)
    weights[[0, 1, 4, 5], 0] = 0.25
    model.get_layer("mean").set_weights([weights])
    return model


def test_deletion_and_insertion_against_hand_computed_areas():
    model = region_mean_model()
    image = np.full((4, 4, 1), 0.5, np.float32)
    image[0:2, 0:2, 0] = [[1.0, 0.8], [0.6, 0.4]]  # the region's mean is 0.7
    # Saliency ranks (0,0), (0,1), (3,3), (3,2) first, then (1,0) and three outside, then (1,1) ...
    saliency = np.zeros((4, 4))
    for rank, (row, column) in enumerate([(0, 0), (0, 1), (3, 3), (3, 2), (1, 0), (2, 2), (2, 3), (1, 3), (1, 1)]):
        saliency[row, column] = 20 - rank
    curves = perturbation_curves(lambda batch: model.predict_on_batch(batch)[:, 0], image, saliency,
                                 np.zeros_like(image), steps=4)
    np.testing.assert_allclose(curves.fractions, [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(curves.deletion, [0.7, 0.25, 0.1, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(curves.insertion, [0.0, 0.45, 0.6, 0.7, 0.7], atol=1e-6)
    assert curves.deletion_auc == pytest.approx(0.25 * (0.475 + 0.175 + 0.05 + 0.0))
    assert curves.insertion_auc == pytest.approx(0.25 * (0.225 + 0.525 + 0.65 + 0.7))


def test_perturbation_steps_that_do_not_divide_the_pixels_end_at_all_of_them():
    model = region_mean_model()
    image = np.ones((4, 4, 1), np.float32)
    curves = perturbation_curves(lambda batch: model.predict_on_batch(batch)[:, 0], image, np.zeros((4, 4)),
                                 np.zeros_like(image), steps=3)
    np.testing.assert_allclose(curves.fractions, [0, 6 / 16, 12 / 16, 1.0])
    # Ties go in row-major order: the first 6 pixels hold 2 + 2 of the region's 4.
    np.testing.assert_allclose(curves.deletion, [1.0, 0.0, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(curves.insertion, [0.0, 1.0, 1.0, 1.0], atol=1e-6)


def test_the_blurred_baseline_keeps_the_mean_and_loses_the_detail():
    image = np.zeros((64, 64, 1), np.float32)
    image[::2] = 1.0  # stripes one pixel wide
    baseline = blurred_baseline(image)  # sigma 2 px at 64
    assert baseline.shape == image.shape and baseline.dtype == image.dtype
    inside = baseline[8:-8]  # four sigmas from the edges, where the reflection doubles a stripe
    assert inside.mean() == pytest.approx(0.5, abs=1e-3) and np.ptp(inside) < 0.01
