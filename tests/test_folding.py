"""Inference speed-ups that must not change a number: batch normalisation folding, the matrix zoom."""

import keras
import numpy as np
import pytest
from keras import layers
from scipy.ndimage import zoom

from cxr_pneumonia.architectures import build_model
from cxr_pneumonia.explain import linear_zoom_matrix
from cxr_pneumonia.folding import (
    FoldedBatchNormalization,
    fold_batch_norms,
    foldable_pairs,
)


def with_random_statistics(model: keras.Model, seed: int = 0) -> keras.Model:
    """Give every BatchNormalization non-trivial statistics, so folding has something to fold."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            shapes = [w.shape for w in layer.get_weights()]  # gamma, beta, mean, variance
            layer.set_weights([rng.uniform(0.5, 1.5, shapes[0]), rng.normal(0, 0.2, shapes[1]),
                               rng.normal(0, 0.2, shapes[2]), rng.uniform(0.5, 2.0, shapes[3])])
    return model


def mixed_model() -> keras.Model:
    """Every foldable convolution kind, plus the cases folding must leave alone."""
    inputs = keras.Input((16, 16, 2))
    x = layers.Conv2D(4, 3, padding="same", name="plain")(inputs)  # with bias
    x = layers.BatchNormalization(name="plain_bn")(x)
    x = layers.SeparableConv2D(6, 3, padding="same", use_bias=False, name="separable")(x)
    x = layers.BatchNormalization(name="separable_bn")(x)
    x = layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", use_bias=False, name="depthwise")(x)
    x = layers.BatchNormalization(name="depthwise_bn")(x)
    activated = layers.Conv2D(4, 1, activation="relu", name="activated")(x)  # not linear: not foldable
    y = layers.BatchNormalization(name="activated_bn")(activated)
    shared = layers.Conv2D(4, 1, name="shared")(y)  # two consumers: not foldable
    z = layers.Add()([layers.BatchNormalization(name="shared_bn")(shared), shared])
    kept = layers.Conv2D(4, 1, name="kept")(z)
    z = layers.BatchNormalization(name="kept_bn")(kept)
    outputs = layers.Dense(1)(layers.GlobalAveragePooling2D()(z))
    return with_random_statistics(keras.Model(inputs, outputs))


def test_folding_picks_only_linear_single_consumer_convolutions_not_kept():
    pairs = foldable_pairs(mixed_model(), keep={"kept"})
    assert pairs == {"plain": "plain_bn", "separable": "separable_bn", "depthwise": "depthwise_bn"}


def test_folded_model_gives_the_same_outputs_and_keeps_kept_layers():
    model = mixed_model()
    folded = fold_batch_norms(model, keep=["kept"])
    batch = np.random.default_rng(1).normal(size=(3, 16, 16, 2)).astype(np.float32)
    np.testing.assert_allclose(folded(batch, training=False), model(batch, training=False), rtol=1e-5, atol=1e-5)
    assert isinstance(folded.get_layer("plain_bn"), FoldedBatchNormalization)
    assert isinstance(folded.get_layer("kept_bn"), layers.BatchNormalization)
    for name in ("kept", "shared_bn"):  # the kept layer's and an unfolded layer's outputs are untouched
        original = keras.Model(model.inputs, model.get_layer(name).output)(batch, training=False)
        ours = keras.Model(folded.inputs, folded.get_layer(name).output)(batch, training=False)
        np.testing.assert_allclose(ours, original, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", ["cxr_cnn", "DenseNet121"])
def test_folding_our_cnn_and_densenet_changes_no_output(arch):
    model = with_random_statistics(build_model(arch, 64))
    folded = fold_batch_norms(model)
    batch = np.random.default_rng(2).random((2, 64, 64, 1)).astype(np.float32)
    reference = model(batch, training=False).numpy()
    np.testing.assert_allclose(folded(batch, training=False).numpy(), reference, rtol=1e-4,
                               atol=1e-4 * np.abs(reference).max())
    norms = sum(isinstance(layer, layers.BatchNormalization) for layer in model.layers)
    assert 0 < len(foldable_pairs(model, set())) <= norms


@pytest.mark.parametrize("shape", [(4, 4), (8, 8), (5, 7), (1, 3)])
def test_linear_zoom_matrix_equals_scipy_zoom(shape):
    source = np.random.default_rng(3).random(shape)
    ours = linear_zoom_matrix(shape[0], 128) @ source @ linear_zoom_matrix(shape[1], 96).T
    np.testing.assert_allclose(ours, zoom(source, (128 / shape[0], 96 / shape[1]), order=1), atol=1e-12)
