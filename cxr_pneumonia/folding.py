"""Batch normalisation folded into the convolution before it, for faster inference.

In inference a BatchNormalization layer is a per-channel affine map, so a linear convolution followed
only by it equals one convolution with scaled kernels and a bias. Keras runs the normalisation as
several element-wise ops on the whole feature map; folding removes them (about a quarter of our CNN's
forward time here). Outputs agree with the trained model to float rounding (tested).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import keras
import numpy as np
from keras import layers

_CONVOLUTIONS = (layers.Conv2D, layers.SeparableConv2D, layers.DepthwiseConv2D)


class FoldedBatchNormalization(layers.Layer):
    """Stands where a folded BatchNormalization was (same name, so layer lookups keep working): identity."""

    def call(self, inputs, **kwargs):  # the node replayed carries BatchNormalization's training and mask
        return inputs


def fold_batch_norms(model: keras.Model, keep: Iterable[str] = ()) -> keras.Model:
    """A copy of a Functional model with each (linear convolution -> BatchNormalization) pair folded into
    the convolution; layers named in `keep` are left as they are, so their outputs stay the same."""
    pairs = foldable_pairs(model, set(keep))
    if not pairs:
        return model
    folded_norms = set(pairs.values())

    def clone(layer: layers.Layer) -> layers.Layer:
        if layer.name in folded_norms:
            return FoldedBatchNormalization(name=layer.name)
        config = layer.get_config()
        if layer.name in pairs:
            config["use_bias"] = True
        return layer.__class__.from_config(config)

    folded = keras.models.clone_model(model, clone_function=clone)
    for layer in model.layers:
        if layer.name in folded_norms or not layer.weights:
            continue
        norm = model.get_layer(pairs[layer.name]) if layer.name in pairs else None
        folded.get_layer(layer.name).set_weights(folded_weights(layer, norm) if norm else layer.get_weights())
    return folded


def foldable_pairs(model: keras.Model, keep: set[str]) -> dict[str, str]:
    """Convolution name -> BatchNormalization name, for each linear convolution whose only consumer is a
    BatchNormalization over the channel axis, neither named in `keep`."""
    consumers: Counter[str] = Counter(_producer(tensor) for tensor in model.outputs)
    for layer in model.layers:
        for tensor in _inputs(layer):
            consumers[_producer(tensor)] += 1
    pairs = {}
    for layer in model.layers:
        if not isinstance(layer, layers.BatchNormalization) or layer.name in keep or layer.axis not in (-1, 3):
            continue
        inputs = _inputs(layer)
        convolution = model.get_layer(_producer(inputs[0])) if len(inputs) == 1 else None
        if (isinstance(convolution, _CONVOLUTIONS) and convolution.name not in keep
                and consumers[convolution.name] == 1 and convolution.activation is keras.activations.linear):
            pairs[convolution.name] = layer.name
    return pairs


def folded_weights(convolution: layers.Layer, norm: layers.BatchNormalization) -> list[np.ndarray]:
    """The convolution's weights with the normalisation folded in, in its layer order, bias last."""
    names = (w.path.rsplit("/", 1)[-1] for w in convolution.weights)
    weights = dict(zip(names, convolution.get_weights(), strict=True))
    mean, variance = (np.asarray(v, dtype=np.float64) for v in (norm.moving_mean, norm.moving_variance))
    gamma = np.asarray(norm.gamma, dtype=np.float64) if norm.scale else np.ones_like(mean)
    beta = np.asarray(norm.beta, dtype=np.float64) if norm.center else np.zeros_like(mean)
    scale = gamma / np.sqrt(variance + norm.epsilon)
    bias = (weights.get("bias", 0.0) - mean) * scale + beta
    if isinstance(convolution, layers.SeparableConv2D):
        kernels = [weights["depthwise_kernel"], weights["pointwise_kernel"] * scale]
    elif isinstance(convolution, layers.DepthwiseConv2D):
        kernel = weights["kernel"]
        kernels = [kernel * scale.reshape(kernel.shape[2:])]  # output channel c * multiplier + m
    else:
        kernels = [weights["kernel"] * scale]
    return [*(k.astype(np.float32) for k in kernels), bias.astype(np.float32)]


def _inputs(layer: layers.Layer) -> list:
    if not layer._inbound_nodes:
        return []
    return list(layer._inbound_nodes[0].input_tensors)


def _producer(tensor) -> str:
    return tensor._keras_history.operation.name
