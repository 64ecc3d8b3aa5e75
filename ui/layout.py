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
from ui.files import CachedJpegImage, RawImageUpload, thumbnail
from ui.handlers import PageHandlers
from ui.messages import text
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
.prose table td, .prose table th { word-break: normal; overflow-wrap: normal; hyphens: none; }
.lab-table table { display: block; overflow-x: auto; }
#disclaimer p, #subtitle p { margin: 0; }
"""
PRIVATE = {"api_visibility": "private"}


def example_groups(examples: Sequence[FoundExample]) -> dict[str, list[FoundExample]]:
    """The examples by population (children, adults), in manifest order."""
    groups: dict[str, list[FoundExample]] = {}
    for item in examples:
        groups.setdefault(item.example.population, []).append(item)
    return groups


def version_picker(service: PneumoniaService) -> gr.Dropdown:
    """The served version by its name first, then every other tag; says when the tags cannot be listed."""
    served = service.default.version or service.settings.revision
    tags = service.version_tags()
    info = text("version_info") if tags is not None else text("version_info_unlisted", version=served)
    return gr.Dropdown([served, *[tag for tag in tags or () if tag != served]], value=served, label=text("version"),
                       info=info, elem_id="version", allow_custom_value=True)  # programs may ask any version


def build_demo(service: PneumoniaService, workers: Executor, examples: list[FoundExample],
               retention_seconds: float) -> gr.Blocks:
    """The Blocks app over `service`."""
    handlers = PageHandlers(service, workers, examples, retention_seconds)
    endpoints = ApiEndpoints(service, workers, handlers)
    info = service.default.info()
    groups = example_groups(examples)
    with gr.Blocks(title="Chest X-ray pneumonia demo", analytics_enabled=False) as demo:
        gr.Markdown(text("title"))
        gr.Markdown(text("subtitle"), elem_id="subtitle")
        gr.Markdown(text("disclaimer"), elem_id="disclaimer")
        with gr.Tabs():
            with gr.Tab(text("result_tab"), id="result-tab") as result_tab, gr.Row():
                with gr.Column(scale=4, min_width=300):
                    with gr.Tab(text("image_tab")):
                        image_input = RawImageUpload(type="filepath", label=text("image_label"),
                                                     sources=["upload", "clipboard"], height=260,
                                                     elem_id="image-input")
                    with gr.Tab(text("file_tab")):
                        file_input = gr.File(label=text("file_label"), file_count="single", type="filepath",
                                             elem_id="file-input")
                    analyze_button = gr.Button(text("analyze"), variant="primary")
                    gr.Markdown(text("examples_heading") if examples else text("no_examples"))
                    galleries = []
                    for population, items in groups.items():
                        gr.Markdown(text(f"gallery_{population}"), elem_id=f"examples-{population}-title")
                        galleries.append(gr.Gallery(
                            [(thumbnail(item.path), item.caption) for item in items],
                            label=text(f"gallery_{population}"),
                            show_label=False, columns=3, height="auto", allow_preview=False, interactive=False,
                            object_fit="contain", elem_id=f"examples-{population}", elem_classes=["example-gallery"]))
                    with gr.Accordion(text("settings"), open=True):
                        method_input = gr.Radio(list(METHODS), value=DEFAULT_METHOD, label=text("method"))
                        boxes_input = gr.Checkbox(False, label=text("boxes"), info=text("boxes_info"))
                        opacity_input = gr.Slider(0.0, 1.0, value=DEFAULT_OPACITY, step=0.05, label=text("opacity"))
                        prevalence_input = gr.Slider(
                            0.01, 0.99, value=DEFAULT_PREVALENCE, step=0.01, label=text("prevalence"),
                            info=text("prevalence_info"), elem_id="prevalence",
                            interactive=info["calibrated_prevalence"] is not None)
                        version_input = version_picker(service)
                with gr.Column(scale=6, min_width=300, elem_id="result"):
                    decision_output = gr.Markdown(elem_id="decision")
                    heatmap_output = gr.ImageSlider(label=text("heatmap"), type="filepath", max_height=430,
                                                    interactive=False, elem_id="heatmap")
                    reference_output = gr.Markdown(elem_id="reference")
                    prevalence_output = gr.Markdown(elem_id="prevalence-result")
                    label_output = gr.Label(num_top_classes=2, label=text("probabilities"), elem_id="probabilities")
                    with gr.Accordion(text("details"), open=False):
                        details_output = gr.Markdown(elem_id="details")
                    with gr.Accordion(text("student_note_title"), open=False):
                        gr.Markdown(render.student_note(info), elem_id="student-note")
                    with gr.Accordion(text("json_title"), open=False):
                        json_output = gr.JSON(label=text("json_title"))
                    with gr.Accordion(text("model_title"), open=False):
                        model_panel = gr.Markdown(render.model_markdown(info), elem_id="model-panel")
            with gr.Tab(text("lab_tab"), id="lab-tab", elem_id="compare-tab") as lab_tab:
                lab_summary = gr.Markdown(text("analyse_first"), elem_id="compare-summary")
                maps, randomised, captions = [], [], []
                with gr.Row(elem_id="compare-maps"):
                    for method in METHODS:
                        with gr.Column(min_width=170):
                            maps.append(CachedJpegImage(label=text("trained_map", method=method), type="filepath",
                                                        interactive=False, height=260))
                            captions.append(gr.Markdown(elem_classes=["map-caption"]))
                            randomised.append(CachedJpegImage(label=text("randomised_map", method=method),
                                                              type="filepath", interactive=False, height=200))
                with gr.Row(elem_id="lab-checks"):
                    curves_output = gr.Plot(label=text("curves"), show_label=False, elem_id="faithfulness-curves")
                    with gr.Column():
                        sanity_summary = gr.Markdown(elem_id="sanity-check", elem_classes=["lab-table"])
                        faithfulness_summary = gr.Markdown(elem_id="faithfulness", elem_classes=["lab-table"])
                with gr.Accordion(text("lab_json"), open=False):
                    lab_json = gr.JSON(label=text("lab_json"))
            build_your_data_tab(service, workers, retention_seconds)
        current = gr.State(None, time_to_live=15 * 60)
        comparison = gr.State(None, time_to_live=15 * 60)
        lab_open = gr.State(False)

        settings = [method_input, opacity_input, version_input, boxes_input, prevalence_input]
        result = [decision_output, heatmap_output, label_output, prevalence_output, details_output, reference_output,
                  model_panel, json_output, current]
        lab_maps = [lab_summary, *maps, *captions, lab_json, comparison]
        lab_checks = [*randomised, *captions, sanity_summary, curves_output, faithfulness_summary]

        def then_lab(event):
            """After a new result: scroll it into view, and refresh the lab if its tab is open."""
            event.then(None, js=SCROLL_TO_RESULT).then(
                lambda is_open, state, opacity: handlers.on_lab_maps(state, opacity) if is_open else gr.skip(),
                [lab_open, current, opacity_input], lab_maps, **PRIVATE).then(
                lambda is_open, state, lab, opacity: handlers.on_lab_checks(state, lab, opacity) if is_open
                else gr.skip(), [lab_open, current, comparison, opacity_input], lab_checks, **PRIVATE)

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
        prevalence_input.release(handlers.on_prevalence, [current, prevalence_input],
                                 [prevalence_output, json_output], **PRIVATE)
        then_lab(version_input.input(handlers.on_version, [current, version_input, method_input, opacity_input,
                                                           boxes_input, prevalence_input],
                                     [*result, prevalence_input], **PRIVATE))
        lab_tab.select(lambda: True, None, lab_open, **PRIVATE).then(
            handlers.on_lab_maps, [current, opacity_input], lab_maps, **PRIVATE).then(
            handlers.on_lab_checks, [current, comparison, opacity_input], lab_checks, **PRIVATE)
        result_tab.select(lambda: False, None, lab_open, **PRIVATE)
        add_api(demo, endpoints, image_input, file_input, settings, decision_output, label_output, model_panel,
                json_output, lab_summary, lab_json)
    return demo


def add_api(demo: gr.Blocks, endpoints: ApiEndpoints, image_input, file_input, settings, decision_output,
            label_output, model_panel, json_output, lab_summary, lab_json) -> None:
    """/predict, /compare and /model_info for programs, on components the page never triggers."""
    method_input, opacity_input, version_input, boxes_input, prevalence_input = settings
    with gr.Column(visible=False):
        trigger = gr.Button()
        original = CachedJpegImage(type="filepath", format="jpeg")
        heatmap = CachedJpegImage(type="filepath", format="jpeg")
        maps = gr.Gallery()
    trigger.click(endpoints.predict, [image_input, file_input, method_input, opacity_input, version_input,
                                      boxes_input, prevalence_input],
                  [label_output, decision_output, original, heatmap, model_panel, json_output], api_name="predict")
    trigger.click(endpoints.compare, [image_input, file_input, opacity_input, version_input, boxes_input],
                  [maps, lab_summary, lab_json], api_name="compare")
    gr.api(endpoints.model_info, api_name="model_info")
