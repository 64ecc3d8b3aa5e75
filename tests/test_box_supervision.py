"""Box supervision: the cell targets come from the radiologists' boxes and move with the image."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cxr_pneumonia.architectures import build_model
from cxr_pneumonia.examples import read_boxes
from cxr_pneumonia.explanation_quality import box_mask
from training.box_supervision import box_supervised_loss, box_supervised_model, cell_size
from training.data import box_targets, boxed_image_dataset, list_labelled_images


def test_the_image_logit_is_the_mean_of_the_cell_logits():
    model = build_model("cxr_cnn", 64)
    wrapper = box_supervised_model(model)
    batch = np.random.default_rng(0).random((2, 64, 64, 1)).astype(np.float32)
    outputs = wrapper(batch, training=False).numpy()
    assert cell_size(model) == 16 and outputs.shape == (2, 1 + 4 * 4)
    np.testing.assert_allclose(outputs[:, 0], outputs[:, 1:].mean(axis=1), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(outputs[:, 0], model(batch, training=False).numpy()[:, 0], rtol=1e-5, atol=1e-6)


def test_cell_targets_are_the_boxes_share_of_each_cell(mini_rsna_dir, mini_data_dir):
    boxes = read_boxes(mini_rsna_dir)
    images = list_labelled_images(mini_rsna_dir)
    kermany_pneumonia = list_labelled_images(mini_data_dir / "train").paths[-1]
    paths = [images.paths[0], next(p for p, label in zip(images.paths, images.labels, strict=True) if label),
             kermany_pneumonia]
    subset = type(images)(paths, np.array([0, 1, 1], np.int32), ["r", "r", "k"])
    stacked, labels, weights = next(iter(boxed_image_dataset(subset, 64, "equalize", boxes).batch(3)))
    image, targets = box_targets(None, None, 16)(stacked, labels, weights)
    assert image.shape == (3, 64, 64, 1)
    cells = targets[:, 1:-1].numpy().reshape(3, 4, 4)
    name = paths[1].rsplit("/", 1)[1]
    expected = box_mask(boxes[name], 256, 256, 64, 64).reshape(4, 16, 4, 16).mean(axis=(1, 3))
    np.testing.assert_allclose(cells[1], expected, atol=1e-6)
    assert cells[1].max() > 0 and not cells[0].any() and not cells[2].any()
    assert targets[:, -1].numpy().tolist() == [1.0, 1.0, 0.0]  # a pneumonia without boxes has unknown cells
    assert targets[:, 0].numpy().tolist() == [0.0, 1.0, 1.0]


def test_geometric_augmentation_moves_the_mask_with_the_image():
    moves = keras.Sequential([keras.layers.RandomTranslation(0.2, 0.2, fill_mode="constant", seed=1),
                              keras.layers.RandomRotation(0.05, fill_mode="constant", seed=2)])
    mask = np.zeros((4, 32, 32, 1), np.float32)
    mask[:, 8:20, 4:14] = 1.0
    stacked = tf.constant(np.concatenate([mask, mask], axis=-1))  # the image is the mask itself
    image, targets = box_targets(moves, None, 8)(stacked, tf.ones(4), tf.ones(4))
    moved_mask_cells = targets[:, 1:-1].numpy()
    image_cells = tf.nn.avg_pool2d(image, 8, 8, "VALID").numpy().reshape(4, -1)
    np.testing.assert_allclose(moved_mask_cells, image_cells, atol=1e-6)
    assert not np.allclose(moved_mask_cells, mask.reshape(4, 4, 8, 4, 8).mean(axis=(2, 4)).reshape(4, -1))


def test_loss_adds_the_cells_only_where_they_are_known():
    logit, cells = 0.5, [2.0, -1.0]
    y_pred = tf.constant([[logit, *cells], [logit, *cells]])
    y_true = tf.constant([[1.0, 1.0, 0.0, 1.0], [1.0, 1.0, 0.0, 0.0]])  # [label, targets, known]
    def bce(label: float, z: float) -> float:
        return float(np.log1p(np.exp(-z)) if label else np.log1p(np.exp(z)))

    losses = box_supervised_loss(0.5)(y_true, y_pred).numpy()
    assert losses[1] == pytest.approx(bce(1, logit), rel=1e-5)
    assert losses[0] == pytest.approx(bce(1, logit) + 0.5 * (bce(1, 2.0) + bce(0, -1.0)) / 2, rel=1e-5)


def test_label_smoothing_pulls_the_image_label_towards_one_half():
    logit, cells = 0.5, [2.0, -1.0]
    y_pred = tf.constant([[logit, *cells]])
    y_true = tf.constant([[1.0, 1.0, 0.0, 0.0]])  # a pneumonia without known cells
    smoothed_label = 0.95
    expected = smoothed_label * np.log1p(np.exp(-logit)) + (1 - smoothed_label) * np.log1p(np.exp(logit))

    loss = box_supervised_loss(1.0, label_smoothing=0.1)(y_true, y_pred).numpy()

    assert loss[0] == pytest.approx(expected, rel=1e-5)
    assert loss[0] > box_supervised_loss(1.0)(y_true, y_pred).numpy()[0]
