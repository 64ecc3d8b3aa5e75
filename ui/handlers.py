"""The page's event handlers: analyse what is on screen, re-blend or re-map the cached result, the lab, the
version picker. A user's mistake becomes a plain message on the page (one log line), never an error badge."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from typing import Any

import gradio as gr

from cxr_pneumonia.examples import FoundExample, content_digest
from cxr_pneumonia.explain import METHODS
from cxr_pneumonia.imaging import ImageDecodeError, read_file_bytes
from cxr_pneumonia.service import Analysis, PneumoniaService, Prepared, UnknownVersionError
from ui import render
from ui.files import cache_jpeg, is_upload, remove_later, wait_for_file
from ui.messages import text

log = logging.getLogger("ui")


@dataclass(frozen=True)
class Current:
    """The analysis on screen with what re-blending, re-mapping and the lab need: the decoded image, in memory."""

    prepared: Prepared
    analysis: Analysis
    show_boxes: bool
    example: FoundExample | None = None


class UserMistake(Exception):
    """Something the visitor can put right; the message says how."""


def deselect(count: int) -> list[gr.Gallery]:
    """Updates that clear the selection of `count` example galleries."""
    return [gr.Gallery(selected_index=None) for _ in range(count)]


class PageHandlers:
    """Event handlers bound to one service, the model threads and the examples."""

    def __init__(self, service: PneumoniaService, workers: Executor, examples: list[FoundExample],
                 retention_seconds: float):
        self.service = service
        self.workers = workers
        self.examples = examples
        self.retention_seconds = retention_seconds
        self.example_digests = {content_digest(item.path.read_bytes()) for item in examples}

    # --- analysing ---------------------------------------------------------------------------------------------

    def on_workers(self, function: Callable, *args: Any) -> Any:
        """Run `function` on the model threads (shared with the REST API); user mistakes become UserMistake."""
        try:
            return self.workers.submit(function, *args).result()
        except UserMistake:
            raise
        except ImageDecodeError as error:
            raise UserMistake(text("unreadable", reason=str(error))) from None
        except UnknownVersionError as error:
            raise UserMistake(text("unknown_version", reason=str(error))) from None
        except FileNotFoundError:
            raise UserMistake(text("file_gone")) from None

    def analyse_path(self, path: str, method: str, opacity: float, version: str, show_boxes: bool,
                     example: FoundExample | None = None) -> Current:
        """Decode, gate, predict and map one file; an upload is removed from disk soon after."""
        def work() -> Current:
            if not wait_for_file(path):
                raise UserMistake(text("file_gone"))
            prepared = self.service.prepare_file(path, version or None)
            return Current(prepared, self.service.analyze_prepared(prepared, method, opacity, show_boxes),
                           show_boxes, example)
        try:
            return self.on_workers(work)
        finally:
            self.forget_upload(path)

    def forget_upload(self, path: str) -> None:
        """Schedule the removal of an uploaded file (not of Gradio's copy of an example)."""
        if not is_upload(path):
            return
        try:
            if content_digest(read_file_bytes(path)) in self.example_digests:
                return
        except (OSError, ImageDecodeError):
            pass
        remove_later([path], self.retention_seconds)

    def chosen_path(self, image: str | None, upload: str | None) -> str:
        """The one file given; a message when there is none or two."""
        if image and upload:
            raise UserMistake(text("two_images"))
        if not (image or upload):
            raise UserMistake(text("no_image"))
        return image or upload

    def result(self, current: Current | None, prevalence: float) -> tuple:
        """The result outputs for an analysis: decision, heatmap slider, probabilities, prevalence, details,
        reference label, model panel, JSON and the state. Images written here are removed soon after."""
        analysis = current.analysis
        panel = render.model_markdown(analysis.model_info)
        reference = render.reference_markdown(current.example)
        data = analysis.as_json(prevalence)
        if analysis.refused:
            return (render.refusal_sentence(analysis.gate), None, None, "", analysis.gate.explanation(), reference,
                    panel, data, current)
        images = (cache_jpeg(analysis.original), cache_jpeg(analysis.overlay))
        remove_later(images, self.retention_seconds)
        prediction = analysis.prediction
        return (render.decision_markdown(analysis, current.show_boxes), images, prediction.probabilities,
                render.prevalence_markdown(prediction, prevalence), render.details_markdown(prediction), reference,
                panel, data, current)

    def failure(self, error: UserMistake) -> tuple:
        """The result outputs after a user's mistake: the message, everything else cleared, one log line."""
        log.info("user mistake: %s", error)
        gr.Warning(str(error))
        return (f"**{error}**", None, None, "", "", "", gr.skip(), None, None)

    def analyse(self, path_of: Callable[[], str], settings: tuple, example: FoundExample | None = None) -> tuple:
        method, opacity, version, show_boxes, prevalence = settings
        try:
            current = self.analyse_path(path_of(), method, opacity, version, show_boxes, example)
        except UserMistake as error:
            return self.failure(error)
        return self.result(current, prevalence)

    def on_analyze(self, image: str | None, upload: str | None, *settings: Any) -> tuple:
        """The Analyze button: the one file on screen."""
        return self.analyse(lambda: self.chosen_path(image, upload), settings)

    def on_upload(self, galleries: int) -> Callable:
        """An upload into one input: the other input and the galleries cleared, the upload analysed at once."""
        def handle(path: str | None, *settings: Any) -> tuple:
            return (None, *deselect(galleries), *self.analyse(lambda: self.chosen_path(path, None), settings))
        return handle

    def on_example(self, items: list[FoundExample], index_of_gallery: int, galleries: int) -> Callable:
        """A click on an example: into the image input (the file input emptied), the other galleries deselected,
        analysed at once."""
        def handle(selected: gr.SelectData, *settings: Any) -> tuple:
            item = items[selected.index]
            others = [gr.skip() if index == index_of_gallery else gr.Gallery(selected_index=None)
                      for index in range(galleries)]
            return (str(item.path), None, *others, *self.analyse(lambda: str(item.path), settings, item))
        return handle

    # --- changing the view of the cached result ------------------------------------------------------------------

    def on_method(self, current: Current | None, method: str, opacity: float, show_boxes: bool,
                  prevalence: float) -> tuple:
        """Another explanation method: only the map is recomputed, from the image in memory."""
        if current is None:
            return gr.skip()
        analysis = self.workers.submit(self.service.remap, current.prepared, current.analysis, method, opacity,
                                       show_boxes).result()
        return self.result(replace(current, analysis=analysis, show_boxes=show_boxes), prevalence)

    def on_blend(self, current: Current | None, opacity: float, show_boxes: bool, prevalence: float) -> tuple:
        """Opacity or boxes changed: the cached map blended again, no model runs."""
        if current is None:
            return gr.skip()
        analysis = self.service.reblend(current.prepared, current.analysis, opacity, show_boxes)
        return self.result(replace(current, analysis=analysis, show_boxes=show_boxes), prevalence)

    def on_prevalence(self, current: Current | None, prevalence: float) -> tuple:
        """Another prevalence: the cached prediction's probability at it, no model runs."""
        if current is None or current.analysis.refused:
            return gr.skip(), gr.skip()
        return (render.prevalence_markdown(current.analysis.prediction, prevalence),
                current.analysis.as_json(prevalence))

    def on_version(self, current: Current | None, version: str, method: str, opacity: float, show_boxes: bool,
                   prevalence: float) -> tuple:
        """Another model version: its panel and, if an image is on screen, its analysis by that version."""
        try:
            loaded = self.on_workers(self.service.model, version or None)
        except UserMistake as error:
            return (*self.failure(error), gr.skip())
        prevalence_control = gr.Slider(interactive=loaded.model.config.calibrated_prevalence is not None)
        if current is None:
            return (*[gr.skip()] * 6, render.model_markdown(loaded.info()), gr.skip(), gr.skip(), prevalence_control)

        def work() -> Current:
            prepared = self.service.prepare_again(current.prepared, version or None)
            return replace(current, prepared=prepared,
                           analysis=self.service.analyze_prepared(prepared, method, opacity, show_boxes))
        return (*self.result(self.workers.submit(work).result(), prevalence), prevalence_control)

    # --- the lab -------------------------------------------------------------------------------------------------

    def on_lab_maps(self, current: Current | None, opacity: float) -> tuple:
        """Every method's map of the decision, with captions; the sanity check follows in on_lab_checks."""
        empty = [None] * len(METHODS)
        if current is None:
            return text("analyse_first"), *empty, *[""] * len(METHODS), None, None
        if current.analysis.refused:
            return text("lab_refused"), *empty, *[""] * len(METHODS), None, None
        comparison = self.workers.submit(self.service.compare_prepared, current.prepared, opacity,
                                         current.show_boxes).result()
        maps = [cache_jpeg(view.overlay) for view in comparison.views.values()]
        remove_later(maps, self.retention_seconds)
        captions = [render.method_caption(method, view, None) for method, view in comparison.views.items()]
        return render.comparison_markdown(comparison), *maps, *captions, comparison.as_json(), comparison

    def on_lab_checks(self, current: Current | None, comparison: Any, opacity: float) -> tuple:
        """The randomised copy's maps, complete captions, the sanity table and the deletion and insertion curves."""
        if current is None or comparison is None or current.analysis.refused:
            return (*[None] * len(METHODS), *[gr.skip()] * len(METHODS), "", None, "")
        checks = self.workers.submit(self.service.check_prepared, current.prepared, opacity).result()
        randomised = [cache_jpeg(checks.randomised_overlays[method]) for method in METHODS]
        remove_later(randomised, self.retention_seconds)
        captions = [render.method_caption(method, comparison.views[method], checks.randomisation[method])
                    for method in METHODS]
        return (*randomised, *captions, render.sanity_markdown(checks), render.curves_plot(checks),
                render.faithfulness_markdown(checks))
