"""The input gate's classifier (gate_classifier.keras): a small CNN that tells frontal chest X-rays from the
negatives of training.gate_images, with a second head saying what a refused image looks like.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import layers

from training.gate_images import CLASSES, Negatives

CLASSIFIER_SIZE = 64
CLASSIFIER_FILTERS = (16, 32, 64, 64)
CLASSIFIER_BATCH = 64
CLASSIFIER_EPOCHS = 12  # an epoch draws as many chest X-rays as there are positives, and as many negatives
KIND_EPOCHS = 4  # of the kind head, on negatives alone, the trunk frozen
CLASSIFIER_LEARNING_RATE = 1e-3
CLASSIFIER_OUTPUTS = ("column 0: log-odds that the input is not a frontal chest X-ray; the other columns: logits of "
                      "what a refused image looks like, over the classes after frontal_chest")


def build_classifier(image_size: int, n_kinds: int) -> tuple[keras.Model, keras.Model]:
    """The classifier on model inputs (area-downsampled to CLASSIFIER_SIZE inside), with its outputs in one
    (n, 1 + n_kinds) tensor (see CLASSIFIER_OUTPUTS), and its core on CLASSIFIER_SIZE inputs with the two heads
    apart, sharing its weights: four conv-batchnorm-ReLU-maxpool stages, then dense heads over the flattened
    map, so where things lie counts."""
    size = (CLASSIFIER_SIZE, CLASSIFIER_SIZE)
    core_input = keras.Input((*size, 1), name="gate_input")
    x = core_input
    for index, filters in enumerate(CLASSIFIER_FILTERS, start=1):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"gate_conv{index}")(x)
        x = layers.BatchNormalization(name=f"gate_bn{index}")(x)
        x = layers.ReLU(name=f"gate_relu{index}")(x)
        x = layers.MaxPooling2D(name=f"gate_pool{index}")(x)
    x = layers.Dropout(0.3, name="gate_dropout")(layers.Flatten(name="gate_flatten")(x))
    heads = [layers.Dense(1, name="gate_not_frontal")(x), layers.Dense(n_kinds, name="gate_kinds")(x)]
    core = keras.Model(core_input, heads, name="gate_core")
    inputs = keras.Input((image_size, image_size, 1), name="model_input")
    not_frontal, kinds = core(layers.Resizing(*size, interpolation="area", name="gate_downsample")(inputs))
    outputs = layers.Concatenate(name="gate_outputs")([not_frontal, kinds])
    return keras.Model(inputs, outputs, name="gate_classifier"), core


def downsample(inputs: np.ndarray) -> np.ndarray:
    """Model inputs area-downsampled to the classifier's size, as its first layer does."""
    resize = layers.Resizing(CLASSIFIER_SIZE, CLASSIFIER_SIZE, interpolation="area")
    chunks = [keras.ops.convert_to_numpy(resize(inputs[start : start + 256])) for start in range(0, len(inputs), 256)]
    return np.concatenate(chunks) if chunks else np.zeros((0, CLASSIFIER_SIZE, CLASSIFIER_SIZE, 1), np.float32)


def half_and_half(negative: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of a batch that is half positives, half negatives (`negative` flags each sample)."""
    return np.concatenate([rng.choice(np.flatnonzero(~negative), size // 2),
                           rng.choice(np.flatnonzero(negative), size - size // 2)])


def evenly(classes: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of a batch spread evenly over the classes present."""
    members = [np.flatnonzero(classes == index) for index in np.unique(classes)]
    counts = [size // len(members) + (index < size % len(members)) for index in range(len(members))]
    return np.concatenate([rng.choice(group, count) for group, count in zip(members, counts, strict=True)])


def train_classifier(positives: np.ndarray, negatives: Negatives, image_size: int, seed: int,
                     epochs: int = CLASSIFIER_EPOCHS) -> keras.Model:
    """The classifier trained on CLASSIFIER_SIZE positives and on negatives: first the trunk with the
    frontal-or-not head, then the kind head alone on the negatives."""
    keras.utils.set_random_seed(seed)
    classifier, core = build_classifier(image_size, len(CLASSES) - 1)
    augmented_input = keras.Input((CLASSIFIER_SIZE, CLASSIFIER_SIZE, 1))
    augmented = layers.RandomFlip("horizontal", seed=seed)(augmented_input)
    augmented = layers.RandomTranslation(0.05, 0.05, fill_mode="constant", seed=seed + 1)(augmented)
    not_frontal, kinds = core(augmented)
    inputs = np.concatenate([positives, downsample(negatives.inputs)])
    negative = np.arange(len(inputs)) >= len(positives)
    rng = np.random.default_rng(seed)
    steps = math.ceil(2 * len(positives) / CLASSIFIER_BATCH)
    core.get_layer("gate_kinds").trainable = False
    binary = keras.Model(augmented_input, not_frontal)
    binary.compile(keras.optimizers.Adam(CLASSIFIER_LEARNING_RATE), keras.losses.BinaryCrossentropy(from_logits=True))
    for _ in range(epochs * steps):
        batch = half_and_half(negative, CLASSIFIER_BATCH, rng)
        binary.train_on_batch(inputs[batch], negative[batch].astype(np.float32)[:, None])
    for layer in core.layers:
        layer.trainable = layer.name == "gate_kinds"
    kind_model = keras.Model(augmented_input, kinds)
    kind_model.compile(keras.optimizers.Adam(CLASSIFIER_LEARNING_RATE),
                       keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    kind_inputs, kind_labels = inputs[negative], negatives.classes - 1
    for _ in range(KIND_EPOCHS * steps):
        batch = evenly(kind_labels, CLASSIFIER_BATCH, rng)
        kind_model.train_on_batch(kind_inputs[batch], kind_labels[batch])
    return classifier


def classifier_log_odds(classifier: keras.Model, inputs: np.ndarray) -> np.ndarray:
    """The classifier's log-odds that each model input is not a frontal chest X-ray."""
    if not len(inputs):
        return np.zeros(0)
    return classifier.predict(inputs, batch_size=256, verbose=0)[:, 0].astype(np.float64)
