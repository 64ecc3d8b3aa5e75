"""The page: input, examples and settings on the left, the answer and its heatmap on the right, the explanation
lab and "Your data" in tabs of their own; and the API's endpoints. Layout only: the handlers are in ui.handlers."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor

import gradio as gr

from cxr_pneumonia.config import DEFAULT_OPACITY, DEFAULT_PREVALENCE
from cxr_pneumonia.examples import FoundExample
from cxr_pneumonia.explain import DEFAULT_METHOD, METHODS
from cxr_pneumonia.service import PneumoniaService
from ui import render
from ui.api import ApiEndpoints
from ui.controls import ClampedSlider
from ui.files import CachedJpegImage, RawImageUpload, thumbnail
from ui.handlers import PageHandlers
from ui.messages import DEFAULT_LANGUAGE, FixedText, text
from ui.your_data import build_your_data_tab

# Scroll the answer into view unless its top is already in the upper part of the window (phones, scrolled pages).
SCROLL_TO_RESULT = """() => {
  const result = document.getElementById('result');
  if (!result) return;
  const top = result.getBoundingClientRect().top;
  if (top < 0 || top > window.innerHeight * 0.4) window.scrollTo({top: window.scrollY + top - 8, behavior: 'instant'});
}"""
CSS = """
.example-gallery .caption-label { white-space: normal; max-width: 100%; left: 0; right: 0; text-overflow: clip;
  font-size: 11px; line-height: 1.2; }
/* Gradio draws a hovered thumbnail exactly like the selected one: after a click the page scrolls and the thumbnail
   now under the mouse looked selected too. Hover gets a quiet grey border; the selection a thick accent one. */
.example-gallery .thumbnail-item:hover:not(.selected) { --ring-color: transparent; border-color: var(--neutral-400); }
.example-gallery .thumbnail-item.selected { --ring-color: var(--color-accent); border: 3px solid var(--color-accent); }
.prose table td, .prose table th { word-break: normal; overflow-wrap: normal; hyphens: none; }
.lab-table table { display: block; overflow-x: auto; }
#disclaimer p, #subtitle p { margin: 0; }
/* On a phone the three tabs fit side by side, not two and a "..." menu. */
@media (max-width: 480px) { button[role="tab"] { padding-left: 8px; padding-right: 8px; } }
#lab-run { align-self: center; }
"""
# Fonts the visitor's machine has, first found wins: Gradio's default fetches a web font, and offline its bold
# letters fell back one by one to another family (a smaller bold "A" in "PNEUMONIA").
SYSTEM_FONTS = ["-apple-system", "BlinkMacSystemFont", "Segoe UI", "Roboto", "Helvetica Neue", "Arial",
                "Liberation Sans", "Noto Sans", "system-ui", "DejaVu Sans", "sans-serif"]
MONOSPACE_FONTS = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "Liberation Mono", "DejaVu Sans Mono",
                   "monospace"]
THEME = gr.themes.Default(font=SYSTEM_FONTS, font_mono=MONOSPACE_FONTS)
PRIVATE = {"api_visibility": "private"}
# The window's title follows the browser's language, as gr.I18n does for the page (which cannot reach <title>).
SET_TITLE = "() => {{ document.title = (navigator.language || '').toLowerCase().startsWith('fr') ? {fr} : {en}; }}"


def example_groups(examples: Sequence[FoundExample]) -> dict[str, list[FoundExample]]:
    """The examples by population (children, adults), in manifest order."""
    groups: dict[str, list[FoundExample]] = {}
    for item in examples:
        groups.setdefault(item.example.population, []).append(item)
    return groups


def version_picker(service: PneumoniaService, fixed: FixedText) -> gr.Dropdown:
    """The served version by its name first, then every other tag; says when the tags cannot be listed."""
    served = service.default.version or service.settings.revision
    tags = service.version_tags()
    info = fixed("version_info") if tags is not None else fixed("version_info_unlisted", version=served)
    return gr.Dropdown([served, *[tag for tag in tags or () if tag != served]], value=served, label=fixed("version"),
                       info=info, elem_id="version", allow_custom_value=True)  # programs may ask any version


def window_title() -> str:
    """The JavaScript that names the window in the browser's language."""
    return SET_TITLE.format(**{language: repr(text("page_title", language)) for language in ("en", "fr")})


def build_demo(service: PneumoniaService, workers: Executor, examples: list[FoundExample],
               retention_seconds: float) -> gr.Blocks:
    """The Blocks app over `service`."""
    handlers = PageHandlers(service, workers, examples, retention_seconds)
    endpoints = ApiEndpoints(service, workers, handlers)
    info = service.default.info()
    groups = example_groups(examples)
    thumbnails = [[thumbnail(item.path) for item in items] for items in groups.values()]
    fixed = FixedText()
    with gr.Blocks(title=text("page_title", DEFAULT_LANGUAGE), analytics_enabled=False) as demo:
        gr.Markdown(fixed("title"))
        gr.Markdown(fixed("subtitle"), elem_id="subtitle")
        gr.Markdown(fixed("disclaimer"), elem_id="disclaimer")
        # The site profile this visitor put to use (from "Your data"), for this session only: nothing is kept.
        site_state = gr.State(None, time_to_live=60 * 60)
        with gr.Tabs() as tabs:
            with gr.Tab(fixed("result_tab"), id="result-tab") as result_tab, gr.Row():
                with gr.Column(scale=4, min_width=300):
                    with gr.Tab(fixed("image_tab")):
                        image_input = RawImageUpload(type="filepath", label=fixed("image_label"),
                                                     sources=["upload", "clipboard"], height=260,
                                                     elem_id="image-input")
                    with gr.Tab(fixed("file_tab")):
                        file_input = gr.File(label=fixed("file_label"), file_count="single", type="filepath",
                                             elem_id="file-input")
                    analyze_button = gr.Button(fixed("analyze"), variant="primary")
                    gr.Markdown(fixed("examples_heading") if examples else fixed("no_examples"))
                    galleries = []
                    for population, paths in zip(groups, thumbnails, strict=True):
                        gr.Markdown(fixed(f"gallery_{population}"), elem_id=f"examples-{population}-title")
                        galleries.append(gr.Gallery(  # captioned in the visitor's language when the page loads
                            paths,
                            label=fixed(f"gallery_{population}"),
                            show_label=False, columns=3, height="auto", allow_preview=False, interactive=False,
                            object_fit="contain", elem_id=f"examples-{population}", elem_classes=["example-gallery"]))
                    with gr.Accordion(fixed("model_version"), open=False):
                        version_input = version_picker(service, fixed)
                with gr.Column(scale=6, min_width=300, elem_id="result"):
                    with gr.Row(visible=service.site_profile is not None, elem_id="site-row") as site_row:
                        site_note = gr.Markdown(fixed.made("site_note", lambda language: render.site_note(
                            service.site_profile, language)), elem_id="site-note")
                        own_threshold_button = gr.Button(fixed("site_own_threshold"), size="sm", scale=0,
                                                         min_width=160, elem_id="own-threshold",
                                                         visible=service.site_profile is None)
                    decision_output = gr.Markdown(elem_id="decision")
                    # The divider starts near the left edge so that the heatmap, not the original, fills the view.
                    heatmap_output = gr.ImageSlider(label=fixed("heatmap"), type="filepath", max_height=430,
                                                    interactive=False, elem_id="heatmap", slider_position=15)
                    # The controls that change the view sit under what they change, folded until wanted.
                    with gr.Accordion(fixed("heatmap_settings"), open=False, elem_id="heatmap-settings"):
                        method_input = gr.Radio(list(METHODS), value=DEFAULT_METHOD, label=fixed("method"))
                        opacity_input = gr.Slider(0.0, 1.0, value=DEFAULT_OPACITY, step=0.05, label=fixed("opacity"))
                        boxes_input = gr.Checkbox(False, label=fixed("boxes"), info=fixed("boxes_info"))
                    reference_output = gr.Markdown(elem_id="reference")
                    prevalence_output = gr.Markdown(elem_id="prevalence-result")
                    prevalence_input = ClampedSlider(
                        1, 99, value=round(100 * DEFAULT_PREVALENCE), step=1, label=fixed("prevalence"),
                        info=fixed("prevalence_info"), elem_id="prevalence",
                        interactive=info["calibrated_prevalence"] is not None)
                    label_output = gr.Label(num_top_classes=2, label=fixed("probabilities"), elem_id="probabilities")
                    with gr.Accordion(fixed("details"), open=False):
                        details_output = gr.Markdown(elem_id="details")
                    with gr.Accordion(fixed("student_note_title"), open=False):
                        gr.Markdown(fixed("student_note", **render.student_note(info)), elem_id="student-note")
                    with gr.Accordion(fixed("json_title"), open=False):
                        json_output = gr.JSON(label=fixed("json_title"))
                    with gr.Accordion(fixed("model_title"), open=False):
                        model_panel = gr.Markdown(fixed.made("model_panel", lambda language: render.model_markdown(
                            info, language)), elem_id="model-panel")
            with gr.Tab(fixed("lab_tab"), id="lab-tab", elem_id="compare-tab") as lab_tab:
                with gr.Row(elem_id="lab-input"):
                    lab_example = gr.Dropdown(  # captioned in the visitor's language when the page loads
                        [(item.path.name, index) for index, item in enumerate(examples)], value=None,
                        label=fixed("lab_example"), elem_id="lab-example", scale=3)
                    lab_upload = RawImageUpload(type="filepath", label=fixed("lab_upload"), sources=["upload"],
                                                height=120, elem_id="lab-upload", scale=2)
                    lab_button = gr.Button(fixed("lab_run"), variant="primary", elem_id="lab-run", scale=0,
                                           min_width=140)
                lab_summary = gr.Markdown(fixed("analyse_first"), elem_id="compare-summary")
                maps, randomised, captions = [], [], []
                with gr.Row(elem_id="compare-maps"):
                    for method in METHODS:
                        with gr.Column(min_width=170):
                            maps.append(CachedJpegImage(label=fixed("trained_map", method=method), type="filepath",
                                                        interactive=False, height=260))
                            captions.append(gr.Markdown(elem_classes=["map-caption"]))
                            randomised.append(CachedJpegImage(label=fixed("randomised_map", method=method),
                                                              type="filepath", interactive=False, height=200))
                with gr.Row(elem_id="lab-checks"):
                    curves_output = gr.Plot(label=fixed("curves"), show_label=False, elem_id="faithfulness-curves")
                    with gr.Column():
                        sanity_summary = gr.Markdown(elem_id="sanity-check", elem_classes=["lab-table"])
                        faithfulness_summary = gr.Markdown(elem_id="faithfulness", elem_classes=["lab-table"])
                with gr.Accordion(fixed("lab_json"), open=False):
                    lab_json = gr.JSON(label=fixed("lab_json"))
            build_your_data_tab(service, workers, retention_seconds, fixed, site_state, tabs)
        current = gr.State(None, time_to_live=15 * 60)
        comparison = gr.State(None, time_to_live=15 * 60)
        lab_open = gr.State(False)

        settings = [method_input, opacity_input, version_input, boxes_input, prevalence_input, site_state]
        result = [decision_output, heatmap_output, label_output, prevalence_output, details_output, reference_output,
                  model_panel, json_output, current]
        lab_maps = [lab_summary, *maps, *captions, lab_json, comparison]
        lab_checks = [*randomised, *captions, sanity_summary, curves_output, faithfulness_summary]

        def then_lab(event, scroll: bool = True):
            """After a new result: scroll it into view, and refresh the lab if its tab is open (its old tables
            cleared first, so that no table stands under another image's maps)."""
            if scroll:
                event = event.then(None, js=SCROLL_TO_RESULT)
            event.then(handlers.clear_lab_if_open, lab_open, lab_checks, **PRIVATE).then(
                handlers.lab_if_open, [lab_open, current, opacity_input], lab_maps, **PRIVATE).then(
                handlers.lab_checks_if_open, [lab_open, current, comparison, opacity_input], lab_checks, **PRIVATE)

        then_lab(analyze_button.click(handlers.on_analyze, [image_input, file_input, *settings], result, **PRIVATE))
        then_lab(image_input.upload(handlers.on_upload(len(galleries)), [image_input, *settings],
                                    [file_input, *galleries, *result], **PRIVATE))
        then_lab(file_input.upload(handlers.on_upload(len(galleries)), [file_input, *settings],
                                   [image_input, *galleries, *result], **PRIVATE))
        for index, (gallery, items) in enumerate(zip(galleries, groups.values(), strict=True)):
            then_lab(gallery.select(handlers.on_example(items, index, len(galleries)), settings,
                                    [image_input, file_input, *galleries, *result], **PRIVATE))
        method_input.change(handlers.on_method, [current, method_input, opacity_input, boxes_input, prevalence_input],
                            result, **PRIVATE)
        for control in (opacity_input.release, boxes_input.input):
            control(handlers.on_blend, [current, opacity_input, boxes_input, prevalence_input], result, **PRIVATE)
        prevalence_input.change(handlers.on_prevalence, [current, prevalence_input],
                                [prevalence_output, json_output], show_progress="hidden", trigger_mode="always_last",
                                **PRIVATE)
        then_lab(version_input.input(handlers.on_version, [current, version_input, method_input, opacity_input,
                                                           boxes_input, prevalence_input, site_state],
                                     [*result, prevalence_input], **PRIVATE))
        own_threshold_button.click(lambda: None, None, site_state, **PRIVATE)
        then_lab(site_state.change(handlers.on_site_profile, [site_state, current, method_input, opacity_input,
                                                             version_input, boxes_input, prevalence_input],
                                   [site_row, site_note, own_threshold_button, *result], **PRIVATE))
        then_lab(lab_button.click(handlers.on_lab_input(examples), [lab_example, lab_upload, *settings], result,
                                  **PRIVATE), scroll=False)
        lab_tab.select(lambda: True, None, lab_open, **PRIVATE).then(
            handlers.clear_lab_if_open, lab_open, lab_checks, **PRIVATE).then(
            handlers.on_lab_maps, [current, opacity_input], lab_maps, **PRIVATE).then(
            handlers.on_lab_checks, [current, comparison, opacity_input], lab_checks, **PRIVATE)
        result_tab.select(lambda: False, None, lab_open, **PRIVATE)
        demo.load(handlers.on_load(list(groups.values()), thumbnails, examples), None, [*galleries, lab_example],
                  **PRIVATE)
        demo.load(None, js=window_title())
        add_api(demo, endpoints, image_input, file_input, settings, decision_output, label_output, model_panel,
                json_output, lab_summary, lab_json)
    demo.page_i18n = fixed.i18n()  # the page's fixed text: pass it as i18n= to launch() or mount_gradio_app()
    return demo


def add_api(demo: gr.Blocks, endpoints: ApiEndpoints, image_input, file_input, settings, decision_output,
            label_output, model_panel, json_output, lab_summary, lab_json) -> None:
    """/predict, /compare and /model_info for programs, on components the page never triggers."""
    method_input, opacity_input, version_input, boxes_input = settings[:4]
    with gr.Column(visible=False):
        trigger = gr.Button()
        # Not the page's slider, whose bounds would refuse 0 and 1 with a traceback: ApiEndpoints checks it.
        prevalence_input = gr.Number(DEFAULT_PREVALENCE)
        original = CachedJpegImage(type="filepath", format="jpeg")
        heatmap = CachedJpegImage(type="filepath", format="jpeg")
        maps = gr.Gallery()
    trigger.click(endpoints.predict, [image_input, file_input, method_input, opacity_input, version_input,
                                      boxes_input, prevalence_input],
                  [label_output, decision_output, original, heatmap, model_panel, json_output], api_name="predict")
    trigger.click(endpoints.compare, [image_input, file_input, opacity_input, version_input, boxes_input],
                  [maps, lab_summary, lab_json], api_name="compare")
    gr.api(endpoints.model_info, api_name="model_info")
