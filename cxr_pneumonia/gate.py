"""The input gate: refuses images that do not look like the chest X-rays the model was trained on.

Two one-class scores of the preprocessed model input, both fitted on training chest X-rays only:

- `feature_distance`: Mahalanobis distance of the CNN's features (global averages of a few layers, from
  mid-level texture to the pooled features the classifier reads) to a Gaussian fitted on the training
  images' features (Ledoit-Wolf shrinkage of the covariance of standardised features);
- `reconstruction_error`: root-mean-square error of a 32x32 thumbnail of the input rebuilt from the
  principal components of the training thumbnails.

An image is refused when either score exceeds its threshold. The arrays live in the model directory's
gate.npz, the thresholds and the method in the "gate" block of its config.json.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from cxr_pneumonia.architectures import LOGIT_LAYER

GATE_FILENAME = "gate.npz"
# Layers whose global averages make the feature vector: two mid-level stages of our CNN and the pooled
# features the classifier reads (other architectures use the layers of these they have, or the penultimate).
FEATURE_LAYERS = ("stage2_pool", "stage3_pool", "pool")
THUMBNAIL_SIZE = 32
FEATURE_BATCH = 64
SCORE_NAMES = ("feature_distance", "reconstruction_error")
SCORE_LABELS = {"feature_distance": "distance of the CNN's features from those of training chest X-rays",
                "reconstruction_error": "error rebuilding a thumbnail from training chest X-ray patterns"}
GATE_METHOD = (
    "refuse when either one-class score of the preprocessed input exceeds its threshold: "
    "Mahalanobis distance of the CNN's features (global averages of feature_layers) to a Gaussian fitted on "
    "training chest X-rays (Ledoit-Wolf shrinkage of standardised features), or RMS reconstruction error of a 32x32 thumbnail "
    "from the principal components of the training thumbnails"
)
REFUSAL_MESSAGE = (
    "This does not look like a chest X-ray (frontal chest radiograph). The model only answers for chest "
    "X-rays; it refused this image rather than guess."
)
PASSED_MESSAGE = "The input gate found that this image looks like the chest X-rays the model was trained on."
ABSENT_MESSAGE = "This model version has no input gate: the image was not checked for being a chest X-ray."
_STATISTIC_KEYS = ("feature_mean", "feature_precision", "thumbnail_mean", "thumbnail_components")

FeatureFunction = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict on one image: passed or refused, with its scores and their thresholds."""

    passed: bool
    scores: dict[str, float]
    thresholds: dict[str, float]
    message: str
    checked: bool = True

    def explanation(self) -> str:
        """The message, and for a refusal which score was over its limit, in Markdown."""
        if self.passed:
            return self.message
        over = [f"{SCORE_LABELS[name]} {self.scores[name]:.3g} (limit {self.thresholds[name]:.3g})"
                for name in SCORE_NAMES if self.scores[name] > self.thresholds[name]]
        return (
            f"**{self.message}**\n\nInput gate: {'; '.join(over)}. The gate compares the image with the "
            "chest X-rays the model was trained on (pediatric frontal radiographs from one hospital), so a "
            "chest X-ray that looks very different from those, for example cropped, rotated or with wide "
            "borders, can be refused too. Upload a frontal chest radiograph, whole and upright."
        )


@dataclass(frozen=True)
class GateStatistics:
    """The fitted one-class models, as the plain arrays stored in gate.npz."""

    feature_mean: np.ndarray  # (p,)
    feature_precision: np.ndarray  # (p, p): inverse of the shrunk covariance
    thumbnail_mean: np.ndarray  # (t * t,)
    thumbnail_components: np.ndarray  # (k, t * t), orthonormal rows

    def save(self, path: str | Path) -> None:
        """Write the arrays to an .npz file."""
        np.savez(path, **{key: getattr(self, key) for key in _STATISTIC_KEYS})

    @classmethod
    def load(cls, path: str | Path) -> GateStatistics:
        """Read the arrays from an .npz file written by `save` (no pickled objects)."""
        with np.load(path, allow_pickle=False) as arrays:
            missing = [key for key in _STATISTIC_KEYS if key not in arrays.files]
            if missing:
                raise ValueError(f"{path} lacks the gate arrays {', '.join(missing)}")
            statistics = cls(**{key: arrays[key] for key in _STATISTIC_KEYS})
        statistics.check_shapes(path)
        return statistics

    def check_shapes(self, source: str | Path) -> None:
        """Raise ValueError unless the arrays fit together."""
        p, d = len(self.feature_mean), len(self.thumbnail_mean)
        if self.feature_precision.shape != (p, p) or self.thumbnail_components.shape[1:] != (d,):
            raise ValueError(f"the gate arrays in {source} do not fit together (features {p}, thumbnails {d})")

    def feature_distance(self, features: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of each row of `features` to the training Gaussian."""
        centred = np.asarray(features, dtype=np.float64) - self.feature_mean
        return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", centred, self.feature_precision, centred), 0.0))

    def reconstruction_error(self, thumbnails: np.ndarray) -> np.ndarray:
        """RMS error of each flattened thumbnail rebuilt from the principal components."""
        centred = np.asarray(thumbnails, dtype=np.float64) - self.thumbnail_mean
        residual = centred - (centred @ self.thumbnail_components.T) @ self.thumbnail_components
        return np.sqrt(np.mean(residual**2, axis=1))


def thumbnails(batch: np.ndarray) -> np.ndarray:
    """Flattened (n, 32 * 32) box-filtered thumbnails of a batch of (s, s, 1) model inputs."""
    size = (THUMBNAIL_SIZE, THUMBNAIL_SIZE)
    small = [np.asarray(Image.fromarray(image[..., 0].astype(np.float32), mode="F").resize(size, Image.Resampling.BOX))
             for image in batch]
    return np.reshape(small, (len(batch), THUMBNAIL_SIZE * THUMBNAIL_SIZE))


def feature_outputs(keras_model: keras.Model, layer_names: list[str] | tuple[str, ...]):
    """The symbolic (n, p) gate features of the model: global averages of the named layers, concatenated."""
    outputs = [_global_average(_layer(keras_model, name).output) for name in layer_names]
    return outputs[0] if len(outputs) == 1 else keras.layers.Concatenate()(outputs)


def feature_function(keras_model: keras.Model, layer_names: list[str] | tuple[str, ...]) -> FeatureFunction:
    """A compiled function from a batch of model inputs to the (n, p) global averages of the named layers."""
    extractor = keras.Model(keras_model.inputs, feature_outputs(keras_model, layer_names))
    size = keras_model.inputs[0].shape[1]
    compiled = tf.function(lambda batch: extractor(batch, training=False),
                           input_signature=[tf.TensorSpec((None, size, size, 1), tf.float32)])

    def features(batch: np.ndarray) -> np.ndarray:
        chunks = [compiled(tf.convert_to_tensor(batch[start : start + FEATURE_BATCH], tf.float32)).numpy()
                  for start in range(0, len(batch), FEATURE_BATCH)]
        return np.concatenate(chunks) if chunks else np.zeros((0, extractor.output.shape[-1]), np.float32)

    return features


def default_feature_layers(keras_model: keras.Model) -> list[str]:
    """FEATURE_LAYERS that the model has, ending with the layer the classifier's dense head reads."""
    names = [layer.name for layer in keras_model.layers]
    head = names.index(LOGIT_LAYER) - 1
    while isinstance(keras_model.layers[head], keras.layers.Dropout):
        head -= 1
    mid_level = [name for name in FEATURE_LAYERS[:-1] if name in names]
    return [*mid_level, names[head]]


def _layer(keras_model: keras.Model, name: str) -> keras.layers.Layer:
    try:
        return keras_model.get_layer(name)
    except ValueError as error:
        raise ValueError(f"model {keras_model.name} has no layer {name!r} to take gate features from") from error


def _global_average(tensor):
    """Image feature maps averaged over height and width; vectors as they are."""
    if len(tensor.shape) == 4:
        return keras.layers.GlobalAveragePooling2D()(tensor)
    if len(tensor.shape) == 2:
        return tensor
    raise ValueError(f"gate features need vectors or image feature maps, not shape {tensor.shape}")


class InputGate:
    """Checks model inputs against the chest X-ray statistics; an absent gate passes everything."""

    def __init__(self, statistics: GateStatistics | None = None, thresholds: dict[str, float] | None = None,
                 features: FeatureFunction | None = None, feature_layers: tuple[str, ...] = ()):
        if statistics is not None and (features is None or set(thresholds or {}) != set(SCORE_NAMES)):
            raise ValueError(f"a gate needs a feature function and thresholds for {', '.join(SCORE_NAMES)}")
        self.statistics = statistics
        self.thresholds = dict(thresholds or {})
        self.feature_layers = tuple(feature_layers)
        self._features = features

    @property
    def present(self) -> bool:
        return self.statistics is not None

    def scores(self, batch: np.ndarray, features: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Both scores for a batch of (s, s, 1) model inputs (empty for an absent gate); pass `features`
        when a forward pass already computed them (see `feature_outputs`)."""
        if self.statistics is None:
            return {}
        return {
            "feature_distance": self.statistics.feature_distance(self._features(batch) if features is None else features),
            "reconstruction_error": self.statistics.reconstruction_error(thumbnails(batch)),
        }

    def refused(self, batch: np.ndarray) -> np.ndarray:
        """A boolean per image of the batch: True where the gate refuses it."""
        return refused_by(self.scores(batch), self.thresholds, len(batch))

    def check(self, model_input: np.ndarray, features: np.ndarray | None = None) -> GateResult:
        """The verdict on one (s, s, 1) model input, given its (1, p) features if already computed."""
        if self.statistics is None:
            return GateResult(True, {}, {}, ABSENT_MESSAGE, checked=False)
        scores = {name: float(values[0]) for name, values in self.scores(model_input[np.newaxis], features).items()}
        passed = all(scores[name] <= self.thresholds[name] for name in SCORE_NAMES)
        return GateResult(passed, scores, dict(self.thresholds), PASSED_MESSAGE if passed else REFUSAL_MESSAGE)


def refused_by(scores: dict[str, np.ndarray], thresholds: dict[str, float], n: int) -> np.ndarray:
    """True where any score exceeds its threshold (all False without scores)."""
    refused = np.zeros(n, dtype=bool)
    for name, values in scores.items():
        refused |= np.asarray(values) > thresholds[name]
    return refused


def load_gate(directory: str | Path, keras_model: keras.Model, block: dict[str, Any] | None) -> InputGate:
    """The gate described by a config.json "gate" block, with its arrays from gate.npz (absent if no block)."""
    if not block:
        return InputGate()
    path = Path(directory) / GATE_FILENAME
    if not path.is_file():
        raise FileNotFoundError(f"config.json describes an input gate but {GATE_FILENAME} is missing from {directory}")
    statistics = GateStatistics.load(path)
    if statistics.thumbnail_mean.shape != (THUMBNAIL_SIZE * THUMBNAIL_SIZE,):
        raise ValueError(f"{GATE_FILENAME} was fitted on thumbnails of another size than {THUMBNAIL_SIZE}x{THUMBNAIL_SIZE}")
    features = feature_function(keras_model, block["feature_layers"])
    if features(np.zeros((1, *keras_model.inputs[0].shape[1:]), np.float32)).shape[1] != len(statistics.feature_mean):
        raise ValueError(f"{GATE_FILENAME} was fitted on {len(statistics.feature_mean)} features, but layers "
                         f"{block['feature_layers']} of this model give another number")
    thresholds = {name: float(value) for name, value in block["thresholds"].items()}
    return InputGate(statistics, thresholds, features, tuple(block["feature_layers"]))
