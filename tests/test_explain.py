"""Explanations: the compiled Grad-CAM equals tf-keras-vis's, every method gives a valid map."""

import matplotlib
import numpy as np
import pytest

from cxr_pneumonia.explain import METHODS, Explainer, display_image, overlay_heatmap
from cxr_pneumonia.model import load_model_dir
from training.data import list_labelled_images


@pytest.fixture(scope="module")
def explainer_and_inputs(tiny_model_dir, mini_data_dir):
    model = load_model_dir(tiny_model_dir)
    paths = list_labelled_images(mini_data_dir / "test").paths
    return Explainer(model), [model.preprocess_file(path) for path in paths]


@pytest.mark.parametrize("label", ["PNEUMONIA", "NORMAL"])
def test_compiled_gradcam_equals_tf_keras_vis(explainer_and_inputs, label):
    explainer, inputs = explainer_and_inputs
    nontrivial = 0
    for model_input in inputs:
        ours = explainer.heatmap(model_input, label, "Grad-CAM")
        reference = explainer.reference_heatmap(model_input, label, "Grad-CAM")
        np.testing.assert_allclose(ours, reference, atol=1e-4)
        nontrivial += ours.max() > 0.5
    assert nontrivial > 0 or label == "NORMAL"


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
