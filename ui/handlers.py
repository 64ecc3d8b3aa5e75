"""The page's event handlers: analyse what is on screen, re-blend or re-map the cached result, the lab, the
version picker. A user's mistake becomes a plain message on the page (one log line), never an error badge. Every
text is written in the visitor's language (ui.messages.language_of)."""

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
from cxr_pneumonia.site_profile import ProfileMismatchError, SiteProfile
from ui import render
from ui.files import cache_jpeg, is_upload, remove_later, wait_for_file
from ui.messages import language_of, text

log = logging.getLogger("ui")


@dataclass(frozen=True)
class Current:
    """The analysis on screen with what re-blending, re-mapping and the lab need: the decoded image, in memory."""

    prepared: Prepared
    analysis: Analysis
    show_boxes: bool
    example: FoundExample | None = None


class UserMistake(Exception):
    """Something the visitor can put right: `code` names it for the log, `message` says how in a language."""

    def __init__(self, code: str, message: Callable[[str], str]):
        super().__init__(code)
        self.code = code
        self.message = message

    @classmethod
    def plain(cls, key: str) -> UserMistake:
        """A mistake told by one message of the tables."""
        return cls(key, lambda language: text(key, language))

    def log(self) -> None:
        """One line in the server's log: the code, never the upload's name or the visitor's text."""
        log.info("user mistake: %s", self.code)


def unreadable(error: ImageDecodeError) -> UserMistake:
    """An upload the decoder cannot read, told from its code."""
    return UserMistake(f"unreadable ({error.code})", lambda language: render.decode_error_message(error, language))


def unknown_version(error: UnknownVersionError) -> UserMistake:
    """A model version that cannot be served, and the ones that can."""
    return UserMistake("unknown version", lambda language: render.unknown_version_message(error, language))


def hidden_answer() -> tuple[gr.ImageSlider, gr.Label]:
    """The heatmap and the probabilities emptied and hidden: after a refusal or a mistake there is no answer, and
    empty boxes would only look like one still loading."""
    return gr.ImageSlider(None, visible=False), gr.Label(None, visible=False)


def share(percent: float) -> float:
    """The prevalence control's percent (1-99) as a share."""
    return min(max(float(percent), 1.0), 99.0) / 100.0


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
            raise unreadable(error) from None
        except UnknownVersionError as error:
            raise unknown_version(error) from None
        except FileNotFoundError:
            raise UserMistake.plain("file_gone") from None
        except ProfileMismatchError as error:
            values = error.values
            raise UserMistake("site profile of another model", lambda language: text(
                "site_profile_other_model", language, **values)) from None

    def analyse_path(self, path: str, method: str, opacity: float, version: str, show_boxes: bool,
                     example: FoundExample | None = None, profile: SiteProfile | None = None) -> Current:
        """Decode, gate, predict and map one file (at `profile`'s threshold when given); an upload is removed from
        disk soon after."""
        def work() -> Current:
            if not wait_for_file(path):
                raise UserMistake.plain("file_gone")
            prepared = self.service.prepare_file(path, version or None, profile)
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
        """The one file given; a mistake when there is none or two."""
        if image and upload:
            raise UserMistake.plain("two_images")
        if not (image or upload):
            raise UserMistake.plain("no_image")
        return image or upload

    def result(self, current: Current, prevalence: float, language: str) -> tuple:
        """The result outputs for an analysis: decision, heatmap slider, probabilities, prevalence, details,
        reference label, model panel, JSON and the state. Images written here are removed soon after."""
        analysis = current.analysis
        panel = render.model_markdown(analysis.model_info, language)
        reference = render.reference_markdown(current.example, language)
        data = analysis.as_json(prevalence)
        if analysis.refused:
            details = "\n\n".join([render.refusal_sentence(analysis.gate, language),
                                   render.gate_details(analysis.gate, language)])
            return (render.refusal_sentence(analysis.gate, language), *hidden_answer(), "", details, reference,
                    panel, data, current)
        images = (cache_jpeg(analysis.original), cache_jpeg(analysis.overlay))
        remove_later(images, self.retention_seconds)
        prediction = analysis.prediction
        return (render.decision_markdown(analysis, current.show_boxes, language), gr.ImageSlider(images, visible=True),
                gr.Label(render.probabilities(prediction, language), visible=True),
                render.prevalence_markdown(prediction, prevalence, language),
                render.details_markdown(prediction, language), reference, panel, data, current)

    def failure(self, error: UserMistake, language: str) -> tuple:
        """The result outputs after a user's mistake: the message, everything else cleared, one log line."""
        error.log()
        message = error.message(language)
        gr.Warning(message, title=text("mistake_title", language))
        return (f"**{message}**", *hidden_answer(), "", "", "", gr.skip(), None, None)

    def analyse(self, path_of: Callable[[], str], settings: tuple, language: str,
                example: FoundExample | None = None) -> tuple:
        method, opacity, version, show_boxes, prevalence, profile = settings
        try:
            current = self.analyse_path(path_of(), method, opacity, version, show_boxes, example, profile)
        except UserMistake as error:
            return self.failure(error, language)
        return self.result(current, share(prevalence), language)

    def on_analyze(self, request: gr.Request, image: str | None, upload: str | None, *settings: Any) -> tuple:
        """The Analyze button: the one file on screen."""
        return self.analyse(lambda: self.chosen_path(image, upload), settings, language_of(request))

    def on_upload(self, galleries: int) -> Callable:
        """An upload into one input: the other input and the galleries cleared, the upload analysed at once."""
        def handle(request: gr.Request, path: str | None, *settings: Any) -> tuple:
            return (None, *deselect(galleries),
                    *self.analyse(lambda: self.chosen_path(path, None), settings, language_of(request)))
        return handle

    def on_example(self, items: list[FoundExample], index_of_gallery: int, galleries: int) -> Callable:
        """A click on an example: into the image input (the file input emptied), the other galleries deselected,
        analysed at once."""
        def handle(selected: gr.SelectData, request: gr.Request, *settings: Any) -> tuple:
            item = items[selected.index]
            others = [gr.skip() if index == index_of_gallery else gr.Gallery(selected_index=None)
                      for index in range(galleries)]
            return (str(item.path), None, *others,
                    *self.analyse(lambda: str(item.path), settings, language_of(request), item))
        return handle

    def on_load(self, groups: list[list[FoundExample]], thumbnails: list[list[str]],
                examples: list[FoundExample]) -> Callable:
        """When the page opens: the example galleries and the lab's example picker, captioned in the visitor's
        language."""
        def handle(request: gr.Request) -> list:
            language = language_of(request)
            galleries = [gr.Gallery([(path, render.example_caption(item, language))
                                     for item, path in zip(items, paths, strict=True)])
                         for items, paths in zip(groups, thumbnails, strict=True)]
            picker = gr.Dropdown([(render.example_choice(item, language), index)
                                  for index, item in enumerate(examples)])
            return [*galleries, picker]
        return handle

    def on_lab_input(self, examples: list[FoundExample]) -> Callable:
        """The lab's own Explain button: the uploaded X-ray, else the example picked, analysed as on the Result
        tab (which then shows it too); the lab's maps and checks follow."""
        def handle(request: gr.Request, index: int | None, upload: str | None, *settings: Any) -> tuple:
            language = language_of(request)
            if upload:
                return self.analyse(lambda: upload, settings, language)
            if index is None:
                return self.failure(UserMistake.plain("lab_nothing_picked"), language)
            item = examples[int(index)]
            return self.analyse(lambda: str(item.path), settings, language, item)
        return handle

    def clear_lab_if_open(self, is_open: bool) -> tuple:
        """Empty the lab's randomised maps, captions, tables and curves before they are computed again."""
        if not is_open:
            return (*[gr.skip()] * (2 * len(METHODS)), gr.skip(), gr.skip(), gr.skip())
        return (*[None] * len(METHODS), *[""] * len(METHODS), "", None, "")

    # --- changing the view of the cached result ------------------------------------------------------------------

    def on_method(self, request: gr.Request, current: Current | None, method: str, opacity: float, show_boxes: bool,
                  prevalence: float) -> tuple:
        """Another explanation method: only the map is recomputed, from the image in memory."""
        if current is None:
            return gr.skip()
        analysis = self.workers.submit(self.service.remap, current.prepared, current.analysis, method, opacity,
                                       show_boxes).result()
        return self.result(replace(current, analysis=analysis, show_boxes=show_boxes), share(prevalence),
                           language_of(request))

    def on_blend(self, request: gr.Request, current: Current | None, opacity: float, show_boxes: bool,
                 prevalence: float) -> tuple:
        """Opacity or boxes changed: the cached map blended again, no model runs."""
        if current is None:
            return gr.skip()
        analysis = self.service.reblend(current.prepared, current.analysis, opacity, show_boxes)
        return self.result(replace(current, analysis=analysis, show_boxes=show_boxes), share(prevalence),
                           language_of(request))

    def on_prevalence(self, request: gr.Request, current: Current | None, prevalence: float) -> tuple:
        """Another prevalence: the cached prediction's probability at it, no model runs."""
        if current is None or current.analysis.refused:
            return gr.skip(), gr.skip()
        return (render.prevalence_markdown(current.analysis.prediction, share(prevalence), language_of(request)),
                current.analysis.as_json(share(prevalence)))

    def on_version(self, request: gr.Request, current: Current | None, version: str, method: str, opacity: float,
                   show_boxes: bool, prevalence: float, profile: SiteProfile | None) -> tuple:
        """Another model version: its panel and, if an image is on screen, its analysis by that version."""
        language = language_of(request)
        try:
            loaded = self.on_workers(self.service.model, version or None)
        except UserMistake as error:
            return (*self.failure(error, language), gr.skip())
        prevalence_control = gr.Slider(interactive=loaded.model.config.calibrated_prevalence is not None)
        if current is None:
            return (*[gr.skip()] * 6, render.model_markdown(loaded.info(), language), gr.skip(), gr.skip(),
                    prevalence_control)

        def work() -> Current:
            prepared = self.service.prepare_again(current.prepared, version or None, profile)
            return replace(current, prepared=prepared,
                           analysis=self.service.analyze_prepared(prepared, method, opacity, show_boxes))
        try:
            again = self.on_workers(work)
        except UserMistake as error:
            return (*self.failure(error, language), gr.skip())
        return (*self.result(again, share(prevalence), language), prevalence_control)

    def on_site_profile(self, request: gr.Request, profile: SiteProfile | None, current: Current | None,
                        method: str, opacity: float, version: str, show_boxes: bool, prevalence: float) -> tuple:
        """A site profile put to use on this page, or dropped: the note above the answer and the image on screen
        decided again (no file is read)."""
        language = language_of(request)
        note = (gr.Row(visible=profile is not None or self.service.site_profile is not None),
                render.site_note(profile or self.service.site_profile, language),
                gr.Button(visible=profile is not None))
        if current is None:
            return (*note, *[gr.skip()] * 9)
        return (*note, *self.on_version(request, current, version, method, opacity, show_boxes, prevalence,
                                        profile)[:-1])

    # --- the lab -------------------------------------------------------------------------------------------------

    def on_lab_maps(self, request: gr.Request, current: Current | None, opacity: float) -> tuple:
        """Every method's map of the decision, with captions; the sanity check follows in on_lab_checks."""
        language = language_of(request)
        empty = [None] * len(METHODS)
        if current is None:
            return text("analyse_first", language), *empty, *[""] * len(METHODS), None, None
        if current.analysis.refused:
            return text("lab_refused", language), *empty, *[""] * len(METHODS), None, None
        comparison = self.workers.submit(self.service.compare_prepared, current.prepared, opacity,
                                         current.show_boxes).result()
        maps = [cache_jpeg(view.overlay) for view in comparison.views.values()]
        remove_later(maps, self.retention_seconds)
        captions = [render.method_caption(method, view, None, language) for method, view in comparison.views.items()]
        return render.comparison_markdown(comparison, language), *maps, *captions, comparison.as_json(), comparison

    def on_lab_checks(self, request: gr.Request, current: Current | None, comparison: Any, opacity: float) -> tuple:
        """The randomised copy's maps, complete captions, the sanity table and the deletion and insertion curves."""
        if current is None or comparison is None or current.analysis.refused:
            return (*[None] * len(METHODS), *[gr.skip()] * len(METHODS), "", None, "")
        language = language_of(request)
        checks = self.workers.submit(self.service.check_prepared, current.prepared, opacity).result()
        randomised = [cache_jpeg(checks.randomised_overlays[method]) for method in METHODS]
        remove_later(randomised, self.retention_seconds)
        captions = [render.method_caption(method, comparison.views[method], checks.randomisation[method], language)
                    for method in METHODS]
        return (*randomised, *captions, render.sanity_markdown(checks, language), render.curves_plot(checks, language),
                render.faithfulness_markdown(checks, language))

    def lab_if_open(self, request: gr.Request, is_open: bool, current: Current | None, opacity: float) -> tuple:
        """After a new result: the lab's maps again when its tab is open."""
        return self.on_lab_maps(request, current, opacity) if is_open else gr.skip()

    def lab_checks_if_open(self, request: gr.Request, is_open: bool, current: Current | None, comparison: Any,
                           opacity: float) -> tuple:
        """After a new result: the lab's checks again when its tab is open."""
        return self.on_lab_checks(request, current, comparison, opacity) if is_open else gr.skip()
