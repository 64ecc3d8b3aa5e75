"""A trained model directory: loading it safely and predicting calibrated probabilities."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from cxr_pneumonia.config import (
    CONFIG_FILENAME,
    LABELS,
    METRICS_FILENAME,
    MODEL_FILENAME,
    UNCERTAIN,
)
from cxr_pneumonia.folding import fold_batch_norms
from cxr_pneumonia.gate import InputGate, load_gate
from cxr_pneumonia.preprocessing import (
    DEFAULT_NORMALIZATION,
    Field,
    Normalization,
    load_model_input,
    prepare_input,
)


@dataclass(frozen=True)
class ModelConfig:
    """Facts that travel with the weights in config.json."""

    image_size: int
    threshold: float = 0.5
    temperature: float = 1.0
    logit_offset: float = 0.0
    labels: tuple[str, ...] = LABELS
    gradcam_layer: str = "last_conv"
    normalization: str = DEFAULT_NORMALIZATION
    band_energies: tuple[float, ...] = ()
    gate: dict[str, Any] | None = None
    calibrated_prevalence: float | None = None
    uncertain_band: tuple[float, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def preprocessing(self) -> Normalization:
        """The normalisation with the facts it needs (the canonical input's band energies)."""
        return Normalization(self.normalization, self.band_energies)

    @property
    def gate_layers(self) -> tuple[str, ...]:
        """The layers the input gate takes its features from (none without a gate)."""
        return tuple((self.gate or {}).get("feature_layers", ()))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelConfig:
        """Read the keys we use from a config.json mapping and keep the rest in `extra`."""
        known = {"image_size", "threshold", "temperature", "logit_offset", "labels", "gradcam_layer", "normalization",
                 "band_energies", "gate", "calibrated_prevalence", "uncertain_band"}
        labels = tuple(data.get("labels", LABELS))
        if labels != LABELS:
            raise ValueError(f"model labels {labels} differ from the app's {LABELS}")
        return cls(
            image_size=int(data["image_size"]),
            threshold=float(data.get("threshold", 0.5)),
            temperature=float(data.get("temperature", 1.0)),
            logit_offset=float(data.get("logit_offset", 0.0)),
            labels=labels,
            gradcam_layer=str(data.get("gradcam_layer", "last_conv")),
            normalization=str(data.get("normalization", DEFAULT_NORMALIZATION)),
            band_energies=tuple(float(value) for value in data.get("band_energies", ())),
            gate=data.get("gate"),
            calibrated_prevalence=_optional_float(data.get("calibrated_prevalence")),
            uncertain_band=_band(data.get("uncertain_band")),
            extra={key: value for key, value in data.items() if key not in known},
        )


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _band(block: dict[str, Any] | None) -> tuple[float, float] | None:
    """The (low, high) probabilities of a config's "uncertain_band" block, or None."""
    return None if not block else (float(block["low"]), float(block["high"]))


@dataclass(frozen=True)
class Prediction:
    """Calibrated probabilities for one image, the decision at the model's threshold and, for models with an
    uncertain band, the three-way answer."""

    pneumonia_probability: float
    threshold: float
    uncertain_band: tuple[float, float] | None = None
    calibrated_prevalence: float | None = None

    @property
    def probabilities(self) -> dict[str, float]:
        return {"NORMAL": 1.0 - self.pneumonia_probability, "PNEUMONIA": self.pneumonia_probability}

    @property
    def label(self) -> str:
        return "PNEUMONIA" if self.pneumonia_probability >= self.threshold else "NORMAL"

    @property
    def answer(self) -> str:
        """PNEUMONIA or NORMAL, or UNCERTAIN inside the model's uncertain band [low, high)."""
        return answer(self.pneumonia_probability, self.threshold, self.uncertain_band)

    def probability_at(self, prevalence: float) -> float:
        """The pneumonia probability where `prevalence` of the X-rays read show pneumonia (Bayes' rule on the odds);
        the model's own probability if it does not state the prevalence it is calibrated for."""
        if self.calibrated_prevalence is None:
            return self.pneumonia_probability
        return probability_at_prevalence(self.pneumonia_probability, prevalence, self.calibrated_prevalence)


def answer(probability: float, threshold: float, band: tuple[float, float] | None) -> str:
    """The three-way answer for a calibrated probability: UNCERTAIN inside [low, high), else the decision."""
    if band is not None and band[0] <= probability < band[1]:
        return UNCERTAIN
    return "PNEUMONIA" if probability >= threshold else "NORMAL"


def probability_at_prevalence(probability: float, prevalence: float, calibrated_prevalence: float = 0.5) -> float:
    """Move a probability calibrated at one prevalence to another: multiply its odds by the ratio of prior odds."""
    if not 0.0 < prevalence < 1.0:
        raise ValueError(f"prevalence must lie strictly between 0 and 1, got {prevalence}")
    probability = min(max(probability, 1e-12), 1.0 - 1e-12)
    odds = probability / (1.0 - probability)
    odds *= (prevalence / (1.0 - prevalence)) / (calibrated_prevalence / (1.0 - calibrated_prevalence))
    return odds / (1.0 + odds)


class PneumoniaModel:
    """A Keras model plus its config and input gate: preprocessing, calibrated prediction, decision."""

    def __init__(self, keras_model: keras.Model, config: ModelConfig, metrics: dict | None = None,
                 gate: InputGate | None = None, inference_model: keras.Model | None = None,
                 weights_sha256: str | None = None):
        self.keras_model = keras_model
        self.config = config
        self.weights_sha256 = weights_sha256  # of model.keras, which site profiles are fitted for
        self.metrics = metrics or {}
        self.gate = gate or InputGate()
        # Predictions, the input gate and the compiled Grad-CAM run this; tf-keras-vis runs keras_model.
        self.inference_model = inference_model or inference_graph(keras_model, config.gradcam_layer, config.gate_layers)
        size = config.image_size
        self._logits = tf.function(
            lambda batch: self.inference_model(batch, training=False),
            input_signature=[tf.TensorSpec((None, size, size, 1), tf.float32)],
        ).get_concrete_function()

    def with_decision(self, threshold: float, uncertain_band: tuple[float, float] | None) -> PneumoniaModel:
        """The same network deciding at another threshold and band (a site profile's); nothing is recompiled."""
        clone = copy.copy(self)
        clone.config = replace(self.config, threshold=threshold, uncertain_band=uncertain_band)
        return clone

    def with_gradcam_layer(self, layer_name: str) -> PneumoniaModel:
        """The same model and gate with Grad-CAM explaining another layer (to compare layers)."""
        return PneumoniaModel(self.keras_model, replace(self.config, gradcam_layer=layer_name), self.metrics, self.gate)

    @property
    def gradcam_grid(self) -> int:
        """The side of the grid Grad-CAM's map comes from (the explained layer's feature map)."""
        return int(self.keras_model.get_layer(self.config.gradcam_layer).output.shape[1])

    def preprocess(self, gray: np.ndarray) -> np.ndarray:
        """A decoded grayscale image as the (size, size, 1) model input."""
        return self.prepare(gray)[0]

    def prepare(self, gray: np.ndarray) -> tuple[np.ndarray, Field]:
        """The model input of a decoded grayscale image and the field of the image it reads."""
        return prepare_input(gray, self.config.image_size, self.config.preprocessing)

    def preprocess_file(self, path: str | Path) -> np.ndarray:
        """An image file read and preprocessed as the model input."""
        return load_model_input(path, self.config.image_size, self.config.preprocessing)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Raw pneumonia logits for a batch of preprocessed images."""
        return self._logits(tf.convert_to_tensor(batch, tf.float32)).numpy().reshape(-1)

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Temperature-calibrated pneumonia probabilities for a batch of preprocessed images."""
        return calibrated_probability(self.logits(batch), self.config.temperature, self.config.logit_offset)

    def predict(self, gray: np.ndarray) -> Prediction:
        """Calibrated prediction for one decoded grayscale image (the input gate is not consulted)."""
        return self.predict_input(self.preprocess(gray))

    def predict_input(self, model_input: np.ndarray) -> Prediction:
        """Calibrated prediction for one preprocessed (size, size, 1) input."""
        return self.prediction_from_logit(float(self.logits(model_input[np.newaxis])[0]))

    def prediction_from_logit(self, logit: float) -> Prediction:
        """The calibrated prediction for one raw pneumonia logit."""
        probability = calibrated_probability(np.array([logit]), self.config.temperature, self.config.logit_offset)
        return Prediction(float(probability[0]), self.config.threshold, self.config.uncertain_band,
                          self.config.calibrated_prevalence)


def inference_graph(keras_model: keras.Model, gradcam_layer: str, gate_layers: Iterable[str] = ()) -> keras.Model:
    """The trained model with its batch normalisation folded; the layers Grad-CAM and the gate read untouched."""
    return fold_batch_norms(keras_model, keep=(gradcam_layer, *gate_layers))


def calibrated_probability(logits: np.ndarray, temperature: float, offset: float = 0.0) -> np.ndarray:
    """Sigmoid of the logits divided by the calibration temperature, plus the calibration offset (Platt scaling)."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature + offset
    return 1.0 / (1.0 + np.exp(-scaled))


def load_model_dir(directory: str | Path) -> PneumoniaModel:
    """Load model.keras (safe_mode) with its config.json, its input gate and, if present, metrics.json."""
    directory = Path(directory)
    config_path = directory / CONFIG_FILENAME
    model_path = directory / MODEL_FILENAME
    for required in (config_path, model_path):
        if not required.is_file():
            raise FileNotFoundError(f"{required.name} is missing from model directory {directory}")
    config = ModelConfig.from_json(json.loads(config_path.read_text()))
    keras_model = keras.saving.load_model(model_path, compile=False, safe_mode=True)
    metrics_path = directory / METRICS_FILENAME
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    inference_model = inference_graph(keras_model, config.gradcam_layer, config.gate_layers)
    gate = load_gate(directory, inference_model, config.gate)
    weights_sha256 = hashlib.sha256(model_path.read_bytes()).hexdigest()
    return PneumoniaModel(keras_model, config, metrics, gate, inference_model, weights_sha256)
