"""Training and prediction see exactly the same tensor for the same file."""

import numpy as np

from cxr_pneumonia.imaging import decode_image
from cxr_pneumonia.model import load_model_dir
from cxr_pneumonia.preprocessing import equalize_histogram, to_model_input
from training.data import image_dataset, list_labelled_images
from training.evaluate import predict_paths


def test_training_pipeline_and_app_path_give_identical_inputs(mini_data_dir):
    images = list_labelled_images(mini_data_dir / "test")
    from_training = [image for image, _ in image_dataset(images, 96).as_numpy_iterator()]
    for path, trained_on in zip(images.paths, from_training, strict=True):
        with open(path, "rb") as handle:
            uploaded = to_model_input(decode_image(handle.read()), 96)  # what the app does with an upload
        assert uploaded.shape == (96, 96, 1) and uploaded.dtype == np.float32
        np.testing.assert_array_equal(trained_on, uploaded)


def test_model_input_is_square_normalised_whatever_the_aspect(mini_data_dir):
    path = next((mini_data_dir / "test" / "NORMAL").iterdir())
    with open(path, "rb") as handle:
        gray = decode_image(handle.read())
    assert gray.shape[0] != gray.shape[1]
    tensor = to_model_input(gray, 64)
    assert tensor.shape == (64, 64, 1)
    assert tensor.min() == 0.0 and tensor.max() == 1.0


def test_evaluation_and_single_prediction_agree(tiny_model_dir, mini_data_dir):
    model = load_model_dir(tiny_model_dir)
    images = list_labelled_images(mini_data_dir / "test")
    batch = predict_paths(model, images.paths)
    for path, probability in zip(images.paths, batch, strict=True):
        with open(path, "rb") as handle:
            single = model.predict(decode_image(handle.read())).pneumonia_probability
        assert abs(single - probability) < 1e-6


def test_equalisation_is_the_cdf_with_ties_and_ignores_monotonic_contrast():
    pixels = np.array([[5.0, 1.0, 3.0], [3.0, 1.0, 9.0]], dtype=np.float32)
    # <= 1: 2 pixels (the darkest, mapped to 0); <= 3: 4; <= 5: 5; <= 9: 6; scaled by the 4 above the darkest
    expected = np.array([[3 / 4, 0.0, 2 / 4], [2 / 4, 0.0, 1.0]], dtype=np.float32)
    np.testing.assert_array_equal(equalize_histogram(pixels), expected)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 40, size=(32, 32)).astype(np.float32)
    np.testing.assert_array_equal(equalize_histogram(image), equalize_histogram(np.sqrt(image) * 7 + 2))
    np.testing.assert_array_equal(equalize_histogram(np.full((4, 4), 7.0, dtype=np.float32)), np.zeros((4, 4)))
