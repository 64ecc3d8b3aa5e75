"""The input gate: refuses images that are not frontal chest X-rays like the ones the model was trained on.

Three scores of the preprocessed model input:

- `feature_distance`: Mahalanobis distance of the CNN's features to a Gaussian fitted on the training images'
  features (Ledoit-Wolf shrinkage of the covariance of standardised features). The features are a mid-level
  layer averaged over each cell of a coarse feature_grid x feature_grid grid (gates fitted before the grid
  have 1: a global average), so that where the textures lie counts, not only which there are: a lateral view
  or a dental film has chest-like textures in another layout;
- `reconstruction_error`: root-mean-square error of a 32x32 thumbnail of the input rebuilt from the
  principal components of the training thumbnails;
- `not_frontal_chest`: the log-odds, from a small CNN trained to tell frontal chest X-rays from other
  radiographs, turned or partial chest X-rays and pictures that are not X-rays, that the input is not a
  frontal chest X-ray. A second head of the same CNN says what a refused image looks like, when it is sure.

The first two are one-class scores, fitted on training chest X-rays alone; the third needs examples of what
to refuse. The verdict weighs them together (`VerdictRule`): each score's excess over its usual range on
validation chest X-rays, summed, so that an image a little unusual by two measures is refused as well as one
far out by one. A model directory keeps the arrays in gate.npz, the small CNN in gate_classifier.keras, and
the rule and the method in the "gate" block of its config.json; gates fitted before the classifier existed
have the first two scores only, and gates fitted before the summed rule one threshold per score.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from cxr_pneumonia.architectures import LOGIT_LAYER

GATE_FILENAME = "gate.npz"
CLASSIFIER_FILENAME = "gate_classifier.keras"
# Layers whose averages over a FEATURE_GRID x FEATURE_GRID grid make the feature vector: our CNN's third stage
# (other architectures use the penultimate layer). Against global averages of stage 2, stage 3 and the pooled
# features, with the same classifiers: 198 of 201 other radiographs refused when left out of the fit, not 193.
FEATURE_LAYERS = ("stage3_pool",)
FEATURE_GRID = 2
THUMBNAIL_SIZE = 32
FEATURE_BATCH = 64
ONE_CLASS_SCORES = ("feature_distance", "reconstruction_error")
CLASSIFIER_SCORE = "not_frontal_chest"
SCORE_NAMES = (*ONE_CLASS_SCORES, CLASSIFIER_SCORE)
SCORE_LABELS = {"feature_distance": "distance of the CNN's features from those of training chest X-rays",
                "reconstruction_error": "error rebuilding a thumbnail from training chest X-ray patterns",
                CLASSIFIER_SCORE: "log-odds of the gate's classifier that this is not a frontal chest X-ray"}
# The method in words: the one-class scores alone, and with the classifier.
ONE_CLASS_METHOD = (
    "scores of the preprocessed input, weighed together by the verdict rule: Mahalanobis distance of the CNN's "
    "features (feature_layers averaged over each cell of a feature_grid x feature_grid grid, so that their layout "
    "counts) to a Gaussian fitted on training chest X-rays (Ledoit-Wolf shrinkage of standardised features); RMS "
    "reconstruction error of a 32x32 thumbnail from the principal components of the training thumbnails"
)
GATE_METHOD = (
    f"{ONE_CLASS_METHOD}; and the log-odds that the input is not a frontal chest X-ray from a small CNN "
    "(gate_classifier.keras) trained on training chest X-rays against other radiographs, turned and partial chest "
    "X-rays and synthetic pictures that are not X-rays"
)
# The classifier's outputs: column 0 is its log-odds that the input is not a frontal chest X-ray, the others
# are logits of what a refused image looks like, over its classes after the first (config.json lists them all).
FRONTAL_CHEST = "frontal_chest"
# What a refused image looks like, by the classifier's class, and what to upload instead.
KIND_MESSAGES = {
    "lateral_chest": ("a lateral (side) view of the chest", "Upload the frontal (PA or AP) view instead."),
    "other_body_part": ("an X-ray of another part of the body", "Upload a frontal chest X-ray instead."),
    "turned_chest": ("a chest X-ray turned on its side or upside down",
                     "Upload it upright, the way a frontal chest X-ray is read."),
    "part_of_chest": ("only part of a chest X-ray (a close-up or a narrow crop)",
                      "Upload the whole frontal chest X-ray."),
    "not_xray": ("something that is not an X-ray (a photo, a drawing or another kind of scan)",
                 "Upload a frontal chest X-ray instead."),
}
# A refused image's most probable kind names what it looks like only when the classifier refused it too and
# gives that kind at least this probability.
KNOWN_KIND_PROBABILITY = 0.5
REFUSAL_MESSAGE = (
    "This does not look like a chest X-ray (frontal chest radiograph). The model only answers for frontal "
    "chest X-rays; it refused this image rather than guess. Upload a frontal (PA or AP) chest X-ray, whole "
    "and upright."
)
PASSED_MESSAGE = "The input gate found that this image looks like the chest X-rays the model was trained on."
ABSENT_MESSAGE = "This model version has no input gate: the image was not checked for being a chest X-ray."
_STATISTIC_KEYS = ("feature_mean", "feature_precision", "thumbnail_mean", "thumbnail_components")

GateFunction = Callable[[np.ndarray], np.ndarray]


def refusal_message(kind: str | None) -> str:
    """What the person is told about a refused image: what it looks like when the gate knows, and what to upload."""
    if kind not in KIND_MESSAGES:
        return REFUSAL_MESSAGE
    looks_like, instead = KIND_MESSAGES[kind]
    return (f"This does not look like a chest X-ray the model reads (a frontal chest radiograph): it looks like "
            f"{looks_like}. The model refused it rather than guess. {instead}")


@dataclass(frozen=True)
class VerdictRule:
    """How the scores make the verdict: each score's excess over its base, in units of its scale, summed
    (the evidence); an image is refused when the evidence exceeds the limit. A gate with one threshold per
    score reads as bases at those thresholds, unit scales and limit 0: refused when any score exceeds its own."""

    bases: dict[str, float]
    scales: dict[str, float]
    limit: float

    @classmethod
    def from_block(cls, block: dict[str, Any]) -> VerdictRule:
        """The rule of a config.json "gate" block: its "evidence", or else its per-score "thresholds"."""
        if "evidence" in block:
            evidence = block["evidence"]
            return cls({name: float(value) for name, value in evidence["bases"].items()},
                       {name: float(value) for name, value in evidence["scales"].items()}, float(evidence["limit"]))
        thresholds = {name: float(value) for name, value in block["thresholds"].items()}
        return cls(thresholds, dict.fromkeys(thresholds, 1.0), 0.0)

    def to_json(self) -> dict[str, Any]:
        """The "evidence" entry of a config.json "gate" block."""
        return {"bases": self.bases, "scales": self.scales, "limit": self.limit}

    def contributions(self, scores: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each score's excess over its base in units of its scale, zero below the base."""
        return {name: np.maximum(0.0, (np.asarray(values, dtype=np.float64) - self.bases[name]) / self.scales[name])
                for name, values in scores.items()}

    def evidence(self, scores: dict[str, np.ndarray], n: int) -> np.ndarray:
        """The summed contributions of each of n images (zeros without scores)."""
        return sum(self.contributions(scores).values(), np.zeros(n))

    def refused(self, scores: dict[str, np.ndarray], n: int) -> np.ndarray:
        """True where the evidence exceeds the limit."""
        return self.evidence(scores, n) > self.limit


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict on one image: passed or refused, with its scores, the rule that weighed them and,
    for a refusal, what the image looks like when the gate knows."""

    passed: bool
    scores: dict[str, float]
    rule: VerdictRule | None
    message: str
    checked: bool = True
    kind: str | None = None

    @property
    def evidence(self) -> float | None:
        """The scores' summed excess (see VerdictRule); None without a gate."""
        if self.rule is None:
            return None
        return float(self.rule.evidence({name: np.array([value]) for name, value in self.scores.items()}, 1)[0])

    def explanation(self) -> str:
        """The message, and for a refusal which scores were above their usual range, in Markdown."""
        if self.passed or self.rule is None:
            return self.message
        above = [f"{SCORE_LABELS[name]} {self.scores[name]:.3g} (usual up to {self.rule.bases[name]:.3g})"
                 for name, value in self.scores.items() if value > self.rule.bases[name]]
        return (
            f"**{self.message}**\n\nInput gate: {'; '.join(above)}; together {self.evidence:.3g} against a limit "
            f"of {self.rule.limit:.3g}. The gate compares the image with the frontal chest X-rays the model was "
            "trained on, so a chest X-ray that looks very different from those, for example cropped, rotated or "
            "with wide borders, can be refused too."
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


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities from (n, k) logits."""
    shifted = np.exp(np.asarray(logits, dtype=np.float64) - np.max(logits, axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def gate_outputs(keras_model: keras.Model, layer_names: list[str] | tuple[str, ...],
                 classifier: keras.Model | None = None, grid: int = 1):
    """The symbolic (n, p [+ k]) gate outputs of the model's forward pass: the named layers averaged over a
    grid x grid grid, concatenated, and the gate classifier's logits on the same input when there is one."""
    outputs = [_grid_average(_layer(keras_model, name).output, grid) for name in layer_names]
    if classifier is not None:
        outputs.append(classifier(keras_model.inputs[0]))
    return outputs[0] if len(outputs) == 1 else keras.layers.Concatenate()(outputs)


def gate_function(keras_model: keras.Model, layer_names: list[str] | tuple[str, ...],
                  classifier: keras.Model | None = None, grid: int = 1) -> GateFunction:
    """A compiled function from a batch of model inputs to its (n, p [+ k]) `gate_outputs`."""
    extractor = keras.Model(keras_model.inputs, gate_outputs(keras_model, layer_names, classifier, grid))
    size = keras_model.inputs[0].shape[1]
    compiled = tf.function(lambda batch: extractor(batch, training=False),
                           input_signature=[tf.TensorSpec((None, size, size, 1), tf.float32)])

    def outputs(batch: np.ndarray) -> np.ndarray:
        chunks = [compiled(tf.convert_to_tensor(batch[start : start + FEATURE_BATCH], tf.float32)).numpy()
                  for start in range(0, len(batch), FEATURE_BATCH)]
        return np.concatenate(chunks) if chunks else np.zeros((0, extractor.output.shape[-1]), np.float32)

    return outputs


def default_feature_layers(keras_model: keras.Model) -> list[str]:
    """FEATURE_LAYERS that the model has, or else the layer the classifier's dense head reads."""
    names = [layer.name for layer in keras_model.layers]
    mid_level = [name for name in FEATURE_LAYERS if name in names]
    if mid_level:
        return mid_level
    head = names.index(LOGIT_LAYER) - 1
    while isinstance(keras_model.layers[head], keras.layers.Dropout):
        head -= 1
    return [names[head]]


def _layer(keras_model: keras.Model, name: str) -> keras.layers.Layer:
    try:
        return keras_model.get_layer(name)
    except ValueError as error:
        raise ValueError(f"model {keras_model.name} has no layer {name!r} to take gate features from") from error


def _grid_average(tensor, grid: int):
    """Image feature maps averaged over each cell of a grid x grid grid, flattened row by row (cell, then
    channel); vectors as they are."""
    if len(tensor.shape) == 2:
        return tensor
    if len(tensor.shape) != 4:
        raise ValueError(f"gate features need vectors or image feature maps, not shape {tensor.shape}")
    if grid == 1:
        return keras.layers.GlobalAveragePooling2D()(tensor)
    height, width = tensor.shape[1:3]
    if height % grid or width % grid:
        raise ValueError(f"a {height}x{width} feature map does not divide into a {grid}x{grid} grid")
    cells = keras.layers.AveragePooling2D((height // grid, width // grid))(tensor)
    return keras.layers.Flatten()(cells)


class InputGate:
    """Checks model inputs against the chest X-ray statistics and the gate classifier; an absent gate passes
    everything."""

    def __init__(self, statistics: GateStatistics | None = None, rule: VerdictRule | None = None,
                 outputs: GateFunction | None = None, feature_layers: tuple[str, ...] = (),
                 classifier: keras.Model | None = None, classes: tuple[str, ...] = (), feature_grid: int = 1):
        names = set(SCORE_NAMES) if classifier is not None else set(ONE_CLASS_SCORES)
        if statistics is not None and (outputs is None or rule is None or set(rule.bases) != names):
            raise ValueError(f"a gate needs its output function and a rule for {', '.join(sorted(names))}")
        if classifier is not None and (not classes or classes[0] != FRONTAL_CHEST):
            raise ValueError(f"the gate classifier's classes must start with {FRONTAL_CHEST}, not {classes}")
        self.statistics = statistics
        self.rule = rule
        self.feature_layers = tuple(feature_layers)
        self.feature_grid = feature_grid
        self.classifier = classifier
        self.classes = tuple(classes)
        self._outputs = outputs

    @property
    def present(self) -> bool:
        return self.statistics is not None

    def outputs(self, keras_model: keras.Model):
        """The symbolic gate outputs of `keras_model`'s forward pass, for a caller that runs that pass anyway
        (the explainer's compiled Grad-CAM); pass its values to `scores` or `check`."""
        return gate_outputs(keras_model, self.feature_layers, self.classifier, self.feature_grid)

    def scores(self, batch: np.ndarray, outputs: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Every score for a batch of (s, s, 1) model inputs (empty for an absent gate); pass `outputs` when
        a forward pass already computed them (see `outputs`)."""
        return self._scores_and_logits(batch, outputs)[0]

    def refused(self, batch: np.ndarray, outputs: np.ndarray | None = None) -> np.ndarray:
        """A boolean per image of the batch: True where the gate refuses it (pass `outputs` as for `scores`)."""
        return self._refused(self.scores(batch, outputs), len(batch))

    def assess(self, batch: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray, list[str | None]]:
        """Every score of a batch, a boolean per image (refused) and, for each refused image, what it looks
        like when the gate knows (None otherwise)."""
        scores, logits = self._scores_and_logits(batch, None)
        refused = self._refused(scores, len(batch))
        kinds = [self.known_kind(logits[index]) if flag and logits is not None else None
                 for index, flag in enumerate(refused)]
        return scores, refused, kinds

    def check(self, model_input: np.ndarray, outputs: np.ndarray | None = None) -> GateResult:
        """The verdict on one (s, s, 1) model input, given its (1, ...) gate outputs if already computed."""
        if self.statistics is None:
            return GateResult(True, {}, None, ABSENT_MESSAGE, checked=False)
        batch_scores, logits = self._scores_and_logits(model_input[np.newaxis], outputs)
        scores = {name: float(values[0]) for name, values in batch_scores.items()}
        if not self.rule.refused(batch_scores, 1)[0]:
            return GateResult(True, scores, self.rule, PASSED_MESSAGE)
        kind = None if logits is None else self.known_kind(logits[0])
        return GateResult(False, scores, self.rule, refusal_message(kind), kind=kind)

    def known_kind(self, outputs: np.ndarray) -> str | None:
        """What a refused input looks like, from its classifier outputs: the most probable kind if the classifier
        finds it unusual too (above its base) and gives that kind KNOWN_KIND_PROBABILITY or more; else None (the
        gate does not know)."""
        if outputs[0] <= self.rule.bases[CLASSIFIER_SCORE]:
            return None
        probabilities = softmax(np.asarray(outputs)[np.newaxis, 1:])[0]
        best = int(np.argmax(probabilities))
        return self.classes[best + 1] if probabilities[best] >= KNOWN_KIND_PROBABILITY else None

    def _refused(self, scores: dict[str, np.ndarray], n: int) -> np.ndarray:
        return self.rule.refused(scores, n) if self.rule else np.zeros(n, dtype=bool)

    def _scores_and_logits(self, batch: np.ndarray, outputs: np.ndarray | None
                           ) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        if self.statistics is None:
            return {}, None
        outputs = self._outputs(batch) if outputs is None else np.asarray(outputs)
        n_features = len(self.statistics.feature_mean)
        scores = {"feature_distance": self.statistics.feature_distance(outputs[:, :n_features]),
                  "reconstruction_error": self.statistics.reconstruction_error(thumbnails(batch))}
        if self.classifier is None:
            return scores, None
        logits = outputs[:, n_features:]
        scores[CLASSIFIER_SCORE] = logits[:, 0].astype(np.float64)
        return scores, logits


def load_classifier(directory: str | Path, block: dict[str, Any], image_size: int) -> keras.Model | None:
    """The gate classifier named by a "gate" block (None for a gate without one), checked against its classes."""
    described = block.get("classifier")
    if not described:
        return None
    path = Path(directory) / described["file"]
    if not path.is_file():
        raise FileNotFoundError(f"config.json describes a gate classifier but {described['file']} is missing "
                                f"from {directory}")
    classifier = keras.saving.load_model(path, compile=False, safe_mode=True)
    if tuple(classifier.inputs[0].shape[1:]) != (image_size, image_size, 1):
        raise ValueError(f"{described['file']} takes inputs of shape {classifier.inputs[0].shape[1:]}, not the model's")
    if classifier.outputs[0].shape[-1] != len(described["classes"]):
        raise ValueError(f"{described['file']} has {classifier.outputs[0].shape[-1]} outputs for "
                         f"{len(described['classes'])} classes")
    return classifier


def load_gate(directory: str | Path, keras_model: keras.Model, block: dict[str, Any] | None) -> InputGate:
    """The gate described by a config.json "gate" block, with its arrays from gate.npz and its classifier
    (absent if no block)."""
    if not block:
        return InputGate()
    path = Path(directory) / GATE_FILENAME
    if not path.is_file():
        raise FileNotFoundError(f"config.json describes an input gate but {GATE_FILENAME} is missing from {directory}")
    statistics = GateStatistics.load(path)
    if statistics.thumbnail_mean.shape != (THUMBNAIL_SIZE * THUMBNAIL_SIZE,):
        raise ValueError(f"{GATE_FILENAME} was fitted on thumbnails of another size than "
                         f"{THUMBNAIL_SIZE}x{THUMBNAIL_SIZE}")
    image_size = keras_model.inputs[0].shape[1]
    classifier = load_classifier(directory, block, image_size)
    classes = tuple(block["classifier"]["classes"]) if classifier is not None else ()
    grid = int(block.get("feature_grid", 1))
    outputs = gate_function(keras_model, block["feature_layers"], classifier, grid)
    n_outputs = outputs(np.zeros((1, image_size, image_size, 1), np.float32)).shape[1]
    if n_outputs != len(statistics.feature_mean) + len(classes):
        raise ValueError(f"{GATE_FILENAME} was fitted on {len(statistics.feature_mean)} features, but layers "
                         f"{block['feature_layers']} of this model give another number")
    return InputGate(statistics, VerdictRule.from_block(block), outputs, tuple(block["feature_layers"]), classifier,
                     classes, grid)
