"""Saliency maps (tf-keras-vis: three class activation maps and SmoothGrad) and their overlay on the radiograph."""

from __future__ import annotations

import copy
import functools
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import keras
import matplotlib
import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw
from tf_keras_vis.gradcam import Gradcam
from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
from tf_keras_vis.layercam import Layercam
from tf_keras_vis.saliency import Saliency
from tf_keras_vis.utils import normalize

from cxr_pneumonia.explanation_quality import Box, randomised_copy, top_groups
from cxr_pneumonia.gate import GateResult
from cxr_pneumonia.model import PneumoniaModel, Prediction
from cxr_pneumonia.preprocessing import Field, resize

# Score-CAM is left out: with a single sigmoid/logit output it is broken in tf-keras-vis 0.8.7
# (its issues #78 and #103). SmoothGrad is tf-keras-vis's Saliency averaged over noisy copies.
METHODS: dict[str, type] = {"Grad-CAM": Gradcam, "Grad-CAM++": GradcamPlusPlus, "Layer-CAM": Layercam,
                            "SmoothGrad": Saliency}
DEFAULT_METHOD = "Grad-CAM"
# SmoothGrad: tf-keras-vis's defaults (Smilkov et al. 2017 found 10-20 % noise best); a fixed seed per call,
# so one image always gets the same map.
SMOOTHGRAD_SAMPLES = 20
SMOOTHGRAD_NOISE = 0.20
SMOOTHGRAD_SEED = 0
DEFAULT_COLORMAP = "jet"
COLORMAP_LEVELS = 256  # matplotlib's own colormaps have 256 entries, a PIL palette as many
BOX_COLOUR = (255, 0, 255)  # magenta: in neither the jet colormap nor the grey film


def class_score(label: str) -> Callable:
    """Score to explain: the logit for PNEUMONIA, its negative for NORMAL."""
    if label == "PNEUMONIA":
        return lambda output: output[:, 0]
    if label == "NORMAL":
        return lambda output: -output[:, 0]
    raise ValueError(f"unknown label {label!r}")


class CompiledGradcam:
    """Prediction and Grad-CAM in one compiled forward and backward pass: tf-keras-vis's Gradcam without
    its per-call model rebuild (equality with tf-keras-vis is tested). An optional extra output of the
    same network (the input gate's features) comes out of the same pass."""

    def __init__(self, keras_model: keras.Model, layer_name: str, extra_output=None):
        outputs = [keras_model.get_layer(layer_name).output, keras_model.outputs[0]]
        extractor = keras.Model(keras_model.inputs, outputs if extra_output is None else [*outputs, extra_output])
        size = keras_model.inputs[0].shape[1]

        @tf.function(input_signature=[tf.TensorSpec((1, size, size, 1), tf.float32)])
        def forward_and_backward(image: tf.Tensor) -> tuple[tf.Tensor, ...]:
            with tf.GradientTape() as tape:
                activations, logits, *extra = extractor(image, training=False)
                logit = logits[:, 0]
            gradients = tape.gradient(logit, activations)
            weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
            # Evidence for PNEUMONIA; NORMAL's score is the negative logit, so its map is the negative.
            return (logit, tf.reduce_sum(activations * weights, axis=-1), *extra)

        self._forward_and_backward = forward_and_backward.get_concrete_function()  # skips the per-call dispatch

    def logit_and_evidence(self, model_input: np.ndarray) -> tuple[float, np.ndarray, np.ndarray | None]:
        """The pneumonia logit, the unrectified (1, h, w) evidence map for PNEUMONIA and the extra output."""
        logit, evidence, *extra = self._forward_and_backward(tf.constant(model_input[np.newaxis].astype(np.float32)))
        return float(logit.numpy()[0]), evidence.numpy(), extra[0].numpy() if extra else None

    @staticmethod
    def class_map(evidence: np.ndarray, label: str, image_size: int) -> np.ndarray:
        """The normalised (size, size) Grad-CAM of `label` from the evidence map, as tf-keras-vis makes it."""
        rectified = np.maximum(evidence[0] if label == "PNEUMONIA" else -evidence[0], 0.0)
        height, width = rectified.shape
        # scipy.ndimage.zoom(order=1) as two small matrix products: over 20x faster here, same values (tested).
        resized = linear_zoom_matrix(height, image_size) @ rectified @ linear_zoom_matrix(width, image_size).T
        return normalize(resized[np.newaxis].astype(np.float32))[0]

    def __call__(self, model_input: np.ndarray, label: str) -> np.ndarray:
        """The normalised (size, size) Grad-CAM of `label` for one preprocessed image."""
        return self.class_map(self.logit_and_evidence(model_input)[1], label, model_input.shape[0])


class CompiledSmoothGrad:
    """tf-keras-vis's SmoothGrad (Saliency with smooth_samples) as one compiled pass over all the noisy copies
    instead of one eager pass each (equality with tf-keras-vis is tested)."""

    def __init__(self, keras_model: keras.Model, samples: int = SMOOTHGRAD_SAMPLES, noise: float = SMOOTHGRAD_NOISE):
        self.samples, self.noise_level = samples, noise
        size = keras_model.inputs[0].shape[1]

        signature = [tf.TensorSpec((samples, size, size, 1), tf.float32), tf.TensorSpec((), tf.float32)]

        @tf.function(input_signature=signature)
        def mean_absolute_gradient(noisy: tf.Tensor, sign: tf.Tensor) -> tf.Tensor:
            with tf.GradientTape() as tape:
                tape.watch(noisy)
                scores = sign * keras_model(noisy, training=False)[:, 0]
            return tf.reduce_mean(tf.abs(tape.gradient(scores, noisy)), axis=0)  # the copies are independent

        self._mean_absolute_gradient = mean_absolute_gradient.get_concrete_function()

    def noise(self, model_input: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Gaussian noise for every copy, its scale `noise_level` of the input's range (as tf-keras-vis draws it)."""
        sigma = self.noise_level * (float(model_input.max()) - float(model_input.min()))
        return rng.normal(0.0, sigma, (self.samples, *model_input.shape))

    def __call__(self, model_input: np.ndarray, label: str, noise: np.ndarray | None = None) -> np.ndarray:
        """The normalised (size, size) SmoothGrad of `label` (the same map for both labels: it is |gradient|)."""
        if noise is None:
            noise = self.noise(model_input, np.random.default_rng(SMOOTHGRAD_SEED))
        noisy = tf.constant((model_input[np.newaxis] + noise).astype(np.float32))
        sign = tf.constant(1.0 if label == "PNEUMONIA" else -1.0)
        gradient = self._mean_absolute_gradient(noisy, sign).numpy()
        return normalize(np.max(gradient, axis=-1)[np.newaxis])[0]


@dataclass(frozen=True)
class TimedMap:
    """One method's map and the seconds it took."""

    heatmap: np.ndarray
    seconds: float


@functools.cache
def linear_zoom_matrix(source: int, target: int) -> np.ndarray:
    """The (target, source) matrix of scipy.ndimage.zoom's linear interpolation along one axis: output
    index i samples input coordinate i * (source - 1) / (target - 1), corners aligned."""
    coordinates = np.arange(target) * ((source - 1) / (target - 1) if target > 1 else 0.0)
    lower = np.minimum(np.floor(coordinates).astype(int), source - 1)
    upper = np.minimum(lower + 1, source - 1)
    fraction = coordinates - lower
    matrix = np.zeros((target, source))
    np.add.at(matrix, (np.arange(target), lower), 1.0 - fraction)
    np.add.at(matrix, (np.arange(target), upper), fraction)
    return matrix


class Explainer:
    """Heatmaps for one model: compiled Grad-CAM and SmoothGrad, the other methods through tf-keras-vis."""

    def __init__(self, model: PneumoniaModel):
        self.model = model
        self._methods = {name: cls(model.keras_model, clone=False) for name, cls in METHODS.items()}
        inference_model = model.inference_model
        gate_features = model.gate.outputs(inference_model) if model.gate.present else None
        self._gradcam = CompiledGradcam(inference_model, model.config.gradcam_layer, gate_features)
        self._lock = threading.Lock()
        self._smoothgrad: CompiledSmoothGrad | None = None  # built on first use: the default path never needs it
        self._randomised_top: Explainer | None = None

    def for_model(self, model: PneumoniaModel) -> Explainer:
        """This explainer serving a copy of its model that decides at another threshold (PneumoniaModel.with_decision):
        the compiled passes are shared."""
        clone = copy.copy(self)
        clone.model = model
        return clone

    def warm_up(self) -> None:
        """Run the compiled pass once on a blank input, so the first request does not pay TensorFlow's
        first-run graph optimisation (about 0.1 s here)."""
        size = self.model.config.image_size
        self._gradcam.logit_and_evidence(np.zeros((size, size, 1), np.float32))

    def heatmap(self, model_input: np.ndarray, label: str, method: str = DEFAULT_METHOD) -> np.ndarray:
        """A (size, size) map in [0, 1] of where the evidence for `label` lies."""
        if method not in self._methods:
            raise ValueError(f"unknown explanation method {method!r}; choose one of {', '.join(METHODS)}")
        if method == "Grad-CAM":
            return self._gradcam(model_input, label)
        if method == "SmoothGrad":
            return self.smoothgrad()(model_input, label)
        return self.reference_heatmap(model_input, label, method)

    def smoothgrad(self) -> CompiledSmoothGrad:
        """The compiled SmoothGrad of this model, built once."""
        with self._lock:
            if self._smoothgrad is None:
                self._smoothgrad = CompiledSmoothGrad(self.model.inference_model)
            return self._smoothgrad

    def compare(self, model_input: np.ndarray, label: str, methods: Iterable[str] = METHODS) -> dict[str, TimedMap]:
        """Every method's map of `label` for one image, with its time."""
        maps = {}
        for method in methods:
            started = time.perf_counter()
            heatmap = self.heatmap(model_input, label, method)
            maps[method] = TimedMap(heatmap, time.perf_counter() - started)
        return maps

    def randomised_layers(self) -> tuple[str, ...]:
        """The layers the randomisation check re-initialises: the cascade from the logit down to the layer
        Grad-CAM explains."""
        groups = top_groups(self.model.keras_model, self.model.config.gradcam_layer)
        return tuple(name for group in groups for name in group)

    def randomised_top(self) -> Explainer:
        """The explainer of a copy of the model with randomised_layers() re-initialised; built once."""
        with self._lock:
            if self._randomised_top is None:
                self._randomised_top = randomised_explainer(self.model, self.randomised_layers())
            return self._randomised_top

    def predict_and_explain(self, model_input: np.ndarray, method: str = DEFAULT_METHOD
                            ) -> tuple[Prediction, np.ndarray]:
        """The calibrated prediction and the heatmap of the decided label; one pass for Grad-CAM."""
        if method != "Grad-CAM":
            prediction = self.model.predict_input(model_input)
            return prediction, self.heatmap(model_input, prediction.label, method)
        prediction, heatmap, _ = self._gradcam_pass(model_input)
        return prediction, heatmap

    def gate_predict_and_explain(self, model_input: np.ndarray, method: str = DEFAULT_METHOD
                                 ) -> tuple[GateResult, Prediction | None, np.ndarray | None]:
        """The input gate's verdict and, if it passes, the prediction and heatmap; Grad-CAM and the gate
        share one network pass."""
        if method != "Grad-CAM":
            gate = self.model.gate.check(model_input)
            return (gate, *self.predict_and_explain(model_input, method)) if gate.passed else (gate, None, None)
        prediction, heatmap, features = self._gradcam_pass(model_input)
        gate = self.model.gate.check(model_input, features)
        return (gate, prediction, heatmap) if gate.passed else (gate, None, None)

    def _gradcam_pass(self, model_input: np.ndarray) -> tuple[Prediction, np.ndarray, np.ndarray | None]:
        logit, evidence, gate_features = self._gradcam.logit_and_evidence(model_input)
        prediction = self.model.prediction_from_logit(logit)
        return prediction, self._gradcam.class_map(evidence, prediction.label, model_input.shape[0]), gate_features

    def reference_heatmap(self, model_input: np.ndarray, label: str, method: str) -> np.ndarray:
        """The heatmap computed by tf-keras-vis itself."""
        if method == "SmoothGrad":
            smooth = self._methods[method](class_score(label), model_input[np.newaxis].astype(np.float32),
                                           smooth_samples=SMOOTHGRAD_SAMPLES, smooth_noise=SMOOTHGRAD_NOISE)
            return np.asarray(smooth[0], dtype=np.float32)
        cam = self._methods[method](
            class_score(label),
            model_input[np.newaxis].astype(np.float32),
            penultimate_layer=self.model.config.gradcam_layer,
            seek_penultimate_conv_layer=False,
        )
        return np.nan_to_num(np.asarray(cam[0], dtype=np.float32), nan=0.0)


def randomised_explainer(model: PneumoniaModel, layers: Iterable[str]) -> Explainer:
    """The explainer of a copy of `model` with the named layers re-initialised (and no input gate)."""
    return Explainer(PneumoniaModel(randomised_copy(model.keras_model, layers), replace(model.config, gate=None)))


def overlay_heatmap(
    gray: np.ndarray, heatmap: np.ndarray, opacity: float = 0.4, colormap: str = DEFAULT_COLORMAP
) -> np.ndarray:
    """Blend a colour-mapped heatmap over a grayscale image; returns uint8 RGB at the image's size."""
    height, width = gray.shape
    resized = Image.fromarray(heatmap.astype(np.float32), mode="F").resize((width, height), Image.Resampling.BILINEAR)
    # The bin matplotlib itself picks for a value in [0, 1]: floor(value * N), with 1.0 in the last bin.
    levels = np.minimum(np.clip(np.asarray(resized), 0.0, 1.0) * COLORMAP_LEVELS, COLORMAP_LEVELS - 1).astype(np.uint8)
    colours = Image.frombytes("P", (width, height), levels.tobytes())
    colours.putpalette(colormap_palette(colormap))
    base = Image.fromarray(to_uint8(gray), mode="L").convert("RGB")
    # PIL blends 8-bit images in C, 3-4x faster than float arrays here; three roundings cost at most 1.5 levels.
    return np.asarray(Image.blend(base, colours.convert("RGB"), opacity))


def heatmap_on_image(heatmap: np.ndarray, field: Field, image_shape: tuple[int, ...],
                     shown_shape: tuple[int, ...]) -> np.ndarray:
    """A map over the field the model read, placed where that field lies in a shown copy of the image (zero
    elsewhere): the canonical input reads the image without its flat borders."""
    if field == Field(0, image_shape[0], 0, image_shape[1]):
        return heatmap
    scale_y, scale_x = shown_shape[0] / image_shape[0], shown_shape[1] / image_shape[1]
    top, bottom = round(field.top * scale_y), max(round(field.bottom * scale_y), round(field.top * scale_y) + 1)
    left, right = round(field.left * scale_x), max(round(field.right * scale_x), round(field.left * scale_x) + 1)
    placed = np.zeros(shown_shape[:2], dtype=np.float32)
    placed[top:bottom, left:right] = resize(heatmap, bottom - top, right - left)
    return placed


def draw_boxes(rgb: np.ndarray, boxes: Iterable[Box], image_width: int, image_height: int) -> np.ndarray:
    """The RGB image with the outlines of boxes given in pixels of an image_width x image_height original."""
    height, width = rgb.shape[:2]
    picture = Image.fromarray(rgb)
    draw = ImageDraw.Draw(picture)
    scale_x, scale_y = width / image_width, height / image_height
    line = max(2, round(max(width, height) / 160))
    for box in boxes:
        draw.rectangle([box.x * scale_x, box.y * scale_y, (box.x + box.width) * scale_x - 1,
                        (box.y + box.height) * scale_y - 1], outline=BOX_COLOUR, width=line)
    return np.asarray(picture)


def to_uint8(gray: np.ndarray) -> np.ndarray:
    """A [0, 1] float image as 0-255 bytes."""
    return (np.clip(gray, 0.0, 1.0) * 255).round().astype(np.uint8)


@functools.cache
def colormap_palette(colormap: str) -> tuple[int, ...]:
    """The matplotlib colormap as a flat 256-colour RGB palette for PIL."""
    table = matplotlib.colormaps[colormap](np.arange(COLORMAP_LEVELS))[:, :3]
    return tuple((table * 255).round().astype(np.uint8).ravel().tolist())


def display_image(gray: np.ndarray, max_side: int = 512) -> np.ndarray:
    """The decoded image shrunk to at most `max_side` for display, aspect ratio kept."""
    height, width = gray.shape
    scale = min(1.0, max_side / max(height, width))
    if scale == 1.0:
        return gray
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(gray.astype(np.float32), mode="F").resize(size, Image.Resampling.BILINEAR))
