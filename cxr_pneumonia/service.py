"""What the UI calls: load models by revision (cached), analyse an upload, describe the model."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxr_pneumonia.config import DECODE_TIMEOUT_SECONDS
from cxr_pneumonia.explain import (
    DEFAULT_METHOD,
    Explainer,
    display_image,
    overlay_heatmap,
    to_uint8,
)
from cxr_pneumonia.gate import GateResult
from cxr_pneumonia.hub import (
    HUB_ERRORS,
    HubSettings,
    ModelLocation,
    Version,
    list_versions,
    resolve_model,
    version_of,
)
from cxr_pneumonia.imaging import read_image_file
from cxr_pneumonia.model import PneumoniaModel, Prediction, load_model_dir


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to serve, with where it came from."""

    model: PneumoniaModel
    explainer: Explainer
    location: ModelLocation
    version: str | None

    def info(self) -> dict:
        """JSON-ready description: repo, revision, commit, version, source and test metrics."""
        test = self.model.metrics.get("test", {})
        return {
            "repo_id": self.location.repo_id,
            "revision": self.location.revision,
            "commit": self.location.commit,
            "version": self.version,
            "source": self.location.source,
            "fallback_reason": self.location.fallback_reason,
            "architecture": self.model.config.extra.get("architecture"),
            "image_size": self.model.config.image_size,
            "threshold": self.model.config.threshold,
            "temperature": self.model.config.temperature,
            "input_gate": self.model.gate.present,
            "metrics": {key: test.get(key) for key in ("n", "accuracy", "auc", "sensitivity", "specificity")},
        }


@dataclass(frozen=True)
class Analysis:
    """One analysed image: the gate's verdict, and unless it refused the image the prediction and
    heatmap overlay; the original for display, and the model used."""

    gate: GateResult
    prediction: Prediction | None
    original: np.ndarray
    overlay: np.ndarray | None
    heatmap: np.ndarray | None
    method: str
    model_info: dict

    @property
    def refused(self) -> bool:
        """True when the input gate refused the image: then there is no prediction and no heatmap."""
        return not self.gate.passed

    @property
    def decision(self) -> str:
        """The decision at the model's threshold in one plain sentence, or why the image was refused."""
        if self.prediction is None:
            return self.gate.explanation()
        prediction = self.prediction
        percent = 100 * prediction.pneumonia_probability
        side = "at or above" if prediction.label == "PNEUMONIA" else "below"
        finding = "signs of pneumonia" if prediction.label == "PNEUMONIA" else "no sign of pneumonia"
        return (
            f"The model sees {finding}: pneumonia probability {percent:.0f} %, {side} its decision "
            f"threshold of {100 * prediction.threshold:.0f} %. This is a demo, not a diagnosis."
        )

    def as_json(self) -> dict:
        """The result as JSON-ready data: gate verdict, probability and label (null when refused), model."""
        return {
            "gate_passed": self.gate.passed,
            "gate_checked": self.gate.checked,
            "gate_message": self.gate.message,
            "gate_scores": self.gate.scores,
            "gate_thresholds": self.gate.thresholds,
            "pneumonia_probability": None if self.prediction is None else self.prediction.pneumonia_probability,
            "label": None if self.prediction is None else self.prediction.label,
            "threshold": self.model_info["threshold"],
            "model_version": self.model_info["version"],
            "model_commit": self.model_info["commit"],
        }


class PneumoniaService:
    """Serves predictions and explanations for the configured model and any tagged version."""

    def __init__(self, settings: HubSettings):
        self.settings = settings
        self._models: dict[str, LoadedModel] = {}
        self._weights: dict[Path, tuple[PneumoniaModel, Explainer]] = {}
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}
        self._versions: list[Version] | None = None
        self.default = self.model(settings.revision)

    def versions(self) -> list[Version]:
        """Version tags on the Hub, cached once fetched (empty while the Hub is off or out of reach)."""
        if self._versions is None:
            try:
                self._versions = [] if self.settings.offline else list_versions(self.settings)
            except HUB_ERRORS:
                return []  # not cached: the next call asks the Hub again
        return self._versions

    def model(self, revision: str | None = None) -> LoadedModel:
        """The model at `revision` (default: the configured one), loaded once and cached.

        Loading one revision never blocks requests for the others: each revision has its own lock.
        """
        revision = revision or self.settings.revision
        with self._lock:
            if revision in self._models:
                return self._models[revision]
            loading = self._loading.setdefault(revision, threading.Lock())
        with loading:
            with self._lock:
                if revision in self._models:
                    return self._models[revision]
            loaded = self._load(revision)
            with self._lock:
                self._models[revision] = loaded
            return loaded

    def _load(self, revision: str) -> LoadedModel:
        location = resolve_model(self.settings, revision)
        with self._lock:
            cached = self._weights.get(location.directory)  # several revisions may fall back to one copy
        if cached is None:
            model = load_model_dir(location.directory)
            explainer = Explainer(model)
            explainer.warm_up()
            cached = (model, explainer)
            with self._lock:
                cached = self._weights.setdefault(location.directory, cached)
        model, explainer = cached
        return LoadedModel(model, explainer, location, version_of(location, self.versions()))

    def analyze_file(self, path: str | Path, method: str = DEFAULT_METHOD, opacity: float = 0.4,
                     revision: str | None = None) -> Analysis:
        """Analyse an image file; raises ImageDecodeError with a user-facing message."""
        return self._analyze(read_image_file(path, timeout=DECODE_TIMEOUT_SECONDS), method, opacity, revision)

    def _analyze(self, gray: np.ndarray, method: str, opacity: float, revision: str | None) -> Analysis:
        loaded = self.model(revision)
        model_input = loaded.model.preprocess(gray)
        gate, prediction, heatmap = loaded.explainer.gate_predict_and_explain(model_input, method)
        shown = display_image(gray)
        original = to_uint8(shown)
        if not gate.passed:
            return Analysis(gate, None, original, None, None, method, loaded.info())
        return Analysis(
            gate=gate,
            prediction=prediction,
            original=original,
            overlay=overlay_heatmap(shown, heatmap, opacity),
            heatmap=heatmap,
            method=method,
            model_info=loaded.info(),
        )
