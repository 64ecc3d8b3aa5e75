"""What programs call through gradio_client: /predict, /compare and /model_info. Unlike the page's handlers
these raise gr.Error for a user's mistake, so a program gets the message as an exception."""

from __future__ import annotations

from concurrent.futures import Executor

import gradio as gr

from cxr_pneumonia.config import DEFAULT_OPACITY, DEFAULT_PREVALENCE
from cxr_pneumonia.explain import DEFAULT_METHOD
from cxr_pneumonia.service import PneumoniaService, UnknownVersionError
from ui import render
from ui.files import cache_jpeg, remove_later
from ui.handlers import PageHandlers, UserMistake


class ApiEndpoints:
    """The API's functions, over the page's handlers (same model threads, same upload removal)."""

    def __init__(self, service: PneumoniaService, workers: Executor, handlers: PageHandlers):
        self.service = service
        self.workers = workers
        self.handlers = handlers

    def predict(self, image: str | None, upload: str | None = None, method: str = DEFAULT_METHOD,
                opacity: float = DEFAULT_OPACITY, version: str = "", show_boxes: bool = False,
                prevalence: float = DEFAULT_PREVALENCE):
        """Probabilities, decision, original, heatmap, model panel and JSON (with "answer" and the probability at
        `prevalence`) for one image: the image input or the file input, not both."""
        prevalence = checked_prevalence(prevalence)
        try:
            current = self.handlers.analyse_path(self.handlers.chosen_path(image, upload), method, opacity, version,
                                                 show_boxes)
        except UserMistake as error:
            raise gr.Error(str(error), title="Cannot analyse") from None
        analysis = current.analysis
        panel = render.model_markdown(analysis.model_info)
        if analysis.refused:
            return None, render.refusal_sentence(analysis.gate), None, None, panel, analysis.as_json(prevalence)
        images = [cache_jpeg(analysis.original), cache_jpeg(analysis.overlay)]
        remove_later(images, self.handlers.retention_seconds)
        return (analysis.prediction.probabilities, render.decision_markdown(analysis, show_boxes), *images, panel,
                analysis.as_json(prevalence))

    def compare(self, image: str | None, upload: str | None = None, opacity: float = DEFAULT_OPACITY,
                version: str = "", show_boxes: bool = False):
        """Every method's map with its caption, the summary and the JSON."""
        try:
            current = self.handlers.analyse_path(self.handlers.chosen_path(image, upload), DEFAULT_METHOD, opacity,
                                                 version, show_boxes)
        except UserMistake as error:
            raise gr.Error(str(error), title="Cannot analyse") from None
        if current.analysis.refused:
            return [], render.refusal_sentence(current.analysis.gate), current.analysis.as_json()
        comparison = self.workers.submit(self.service.compare_prepared, current.prepared, opacity,
                                         show_boxes).result()
        gallery = [(cache_jpeg(view.overlay), render.method_caption(method, view, None, pending=False))
                   for method, view in comparison.views.items()]
        remove_later([path for path, _ in gallery], self.handlers.retention_seconds)
        return gallery, render.comparison_markdown(comparison), comparison.as_json()

    def model_info(self, version: str = "") -> dict:
        """Where the model at `version` (default: the served one) came from, and its metrics."""
        try:
            return self.service.model(version or None).info()
        except UnknownVersionError as error:
            raise gr.Error(str(error), title="Unknown version") from None


def checked_prevalence(value: float | None) -> float:
    """A prevalence strictly between 0 and 1 (None: the default), or a clear error."""
    if value is None:
        return DEFAULT_PREVALENCE
    if not 0.0 < float(value) < 1.0:
        raise gr.Error(f"prevalence must lie strictly between 0 and 1, not {value}.", title="Bad prevalence")
    return float(value)
