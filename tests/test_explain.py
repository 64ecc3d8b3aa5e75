"""Explanations: the compiled Grad-CAM and SmoothGrad equal tf-keras-vis's, every method gives a valid map,
the boxes are drawn and hit-tested where they are."""

import matplotlib
import numpy as np
import pytest

from cxr_pneumonia.explain import (
    BOX_COLOUR,
    METHODS,
    SMOOTHGRAD_NOISE,
    SMOOTHGRAD_SAMPLES,
    Explainer,
    display_image,
    draw_boxes,
    overlay_heatmap,
)
from cxr_pneumonia.explanation_quality import Box
from cxr_pneumonia.model import load_model_dir
from cxr_pneumonia.service import box_scores
from training.data import list_labelled_images


@pytest.fixture(scope="module")
def explainer_and_inputs(tiny_model_dir, mini_data_dir):
    model = load_model_dir(tiny_model_dir)
    paths = list_labelled_images(mini_data_dir / "test").paths
    return Explainer(model), [model.preprocess_file(path) for path in paths]


def test_compiled_gradcam_equals_tf_keras_vis(explainer_and_inputs):
    explainer, inputs = explainer_and_inputs
    nontrivial = 0
    for label in ("PNEUMONIA", "NORMAL"):
        for model_input in inputs:
            ours = explainer.heatmap(model_input, label, "Grad-CAM")
            reference = explainer.reference_heatmap(model_input, label, "Grad-CAM")
            np.testing.assert_allclose(ours, reference, atol=1e-4)
            nontrivial += ours.max() > 0.5
    assert nontrivial > 0  # a tiny model's map of one class can be empty on every image, but not of both


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_gives_a_normalised_map_at_input_size(explainer_and_inputs, method):
    explainer, inputs = explainer_and_inputs
    heatmap = explainer.heatmap(inputs[0], "PNEUMONIA", method)
    assert heatmap.shape == inputs[0].shape[:2]
    assert np.isfinite(heatmap).all() and heatmap.min() >= 0.0 and heatmap.max() <= 1.0 + 1e-6


def test_unknown_method_is_refused(explainer_and_inputs):
    explainer, inputs = explainer_and_inputs
    with pytest.raises(ValueError, match="Score-CAM"):
        explainer.heatmap(inputs[0], "PNEUMONIA", "Score-CAM")


def test_overlay_blends_at_the_image_size():
    gray = np.zeros((300, 200), dtype=np.float32)
    heatmap = np.zeros((64, 64), dtype=np.float32)
    heatmap[:32] = 1.0  # top half hot
    overlay = overlay_heatmap(gray, heatmap, opacity=0.5, colormap="jet")
    assert overlay.shape == (300, 200, 3) and overlay.dtype == np.uint8
    assert overlay[10, :, 0].mean() > overlay[290, :, 0].mean()  # hot half red, cold half blue
    assert overlay[10, :, 2].mean() < overlay[290, :, 2].mean()
    assert (overlay_heatmap(gray, heatmap, opacity=0.0) == 0).all()  # opacity 0 shows the image only


def test_overlay_colours_are_matplotlibs_colormap():
    heatmap = np.linspace(0.0, 1.0, 64 * 64, dtype=np.float32).reshape(64, 64)
    gray = np.full((64, 64), 0.3, dtype=np.float32)
    overlay = overlay_heatmap(gray, heatmap, opacity=0.6, colormap="viridis").astype(np.float64)
    expected = 0.4 * 0.3 + 0.6 * matplotlib.colormaps["viridis"](heatmap)[..., :3]
    assert np.abs(overlay - expected * 255).max() <= 1.5  # three uint8 roundings


def test_display_image_keeps_aspect_ratio():
    shown = display_image(np.zeros((1024, 768), dtype=np.float32), max_side=512)
    assert shown.shape == (512, 384)


def test_one_pass_prediction_and_gradcam_match_the_separate_paths(explainer_and_inputs):
    explainer, inputs = explainer_and_inputs
    for model_input in inputs:
        prediction, heatmap = explainer.predict_and_explain(model_input, "Grad-CAM")
        separate = explainer.model.predict_input(model_input)
        assert prediction.label == separate.label
        assert prediction.pneumonia_probability == pytest.approx(separate.pneumonia_probability, abs=1e-6)
        reference = explainer.reference_heatmap(model_input, prediction.label, "Grad-CAM")
        np.testing.assert_allclose(heatmap, reference, atol=1e-4)


@pytest.mark.parametrize("label", ["PNEUMONIA", "NORMAL"])
def test_compiled_smoothgrad_equals_tf_keras_vis_with_the_same_noise(explainer_and_inputs, label):
    explainer, inputs = explainer_and_inputs
    model_input = inputs[-1]
    np.random.seed(5)  # tf-keras-vis draws its noise from numpy's global generator
    reference = explainer.reference_heatmap(model_input, label, "SmoothGrad")
    np.random.seed(5)
    sigma = SMOOTHGRAD_NOISE * (model_input.max() - model_input.min())
    noise = np.random.normal(0.0, sigma, (SMOOTHGRAD_SAMPLES, 1, *model_input.shape))[:, 0]
    np.testing.assert_allclose(explainer.smoothgrad()(model_input, label, noise), reference, atol=1e-4)
    assert np.ptp(reference) > 0.1  # not a flat map (the tiny model's gradients are small: normalize caps it)
    repeated = explainer.heatmap(model_input, label, "SmoothGrad")
    np.testing.assert_array_equal(repeated, explainer.heatmap(model_input, label, "SmoothGrad"))  # seeded


def test_compare_gives_every_methods_map_with_its_time(explainer_and_inputs):
    explainer, inputs = explainer_and_inputs
    maps = explainer.compare(inputs[0], "PNEUMONIA")
    assert list(maps) == list(METHODS)
    for method, timed in maps.items():
        np.testing.assert_allclose(timed.heatmap, explainer.heatmap(inputs[0], "PNEUMONIA", method), atol=1e-6)
        assert 0 < timed.seconds < 60


def test_boxes_are_drawn_where_they_are_at_the_display_scale():
    box = Box(x=50, y=100, width=50, height=100)  # the bottom-right quarter of a 100 x 200 image
    shown = np.zeros((100, 50, 3), np.uint8)  # displayed at half size
    drawn = draw_boxes(shown, [box], image_width=100, image_height=200)
    magenta = np.all(drawn == BOX_COLOUR, axis=-1)
    assert magenta[50, 25:50].all() and magenta[50:100, 25].all()  # top and left edges at half scale
    assert not magenta[75, 37] and not magenta[:49].any() and not magenta[:, :24].any()  # hollow, nothing outside


def test_box_hit_test_and_mass_share_map_the_boxes_onto_the_heatmap():
    box = Box(x=50, y=100, width=50, height=100)  # the bottom-right quarter of a 100 x 200 image
    heatmap = np.zeros((8, 8), np.float32)
    heatmap[6, 6] = 1.0  # bottom-right of the map
    scores = box_scores(heatmap, (box,), (200, 100))
    assert scores == {"box_hit": True, "box_mass_share": 1.0, "box_mass_ratio": 4.0}
    heatmap[1, 1] = 3.0  # the peak moves to the top left
    scores = box_scores(heatmap, (box,), (200, 100))
    assert scores["box_hit"] is False and scores["box_mass_share"] == pytest.approx(0.25)
    assert box_scores(heatmap, (), (200, 100)) == {}
    empty = box_scores(np.zeros((8, 8), np.float32), (box,), (200, 100))  # a map with no positive evidence
    assert empty == {"box_hit": False, "box_mass_share": None, "box_mass_ratio": None}
