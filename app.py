"""Gradio Space: pneumonia or normal on a chest X-ray, with a Grad-CAM heatmap and an explanation lab
(every method side by side, the radiologists' boxes, a sanity check and deletion/insertion curves).

A thin UI over the `cxr_pneumonia` library. `python app.py` serves it at / and the REST API
(`cxr_pneumonia.rest`) at /v1, on one port.
"""

from __future__ import annotations

import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# Uploads are medical images and the Space may run offline: no telemetry, set before the imports read it.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # server logs, not a terminal

import gradio as gr
import numpy as np
import uvicorn
from fastapi import FastAPI
from gradio.utils import get_upload_folder
from matplotlib.figure import Figure

from cxr_pneumonia.config import DEFAULT_OPACITY
from cxr_pneumonia.examples import FoundExample, available_examples, boxes_by_digest, content_digest
from cxr_pneumonia.explain import DEFAULT_METHOD, METHODS, display_image, to_uint8
from cxr_pneumonia.explanation_quality import RANDOMISATION_MAX_RHO
from cxr_pneumonia.hub import HubSettings, configure_hub_timeouts
from cxr_pneumonia.imaging import ImageDecodeError, read_image_file
from cxr_pneumonia.lab import curves_figure
from cxr_pneumonia.rest import API_PREFIX, create_rest_api
from cxr_pneumonia.service import Analysis, Comparison, LabChecks, PneumoniaService, box_sentence, encode_jpeg
from ui.your_data import build_your_data_tab

CONCURRENCY_LIMIT = int(os.environ.get("CONCURRENCY_LIMIT", "2"))  # requests computed at once; README "Performance"
MAX_QUEUE_SIZE = 64  # requests waiting for the model, on the page's queue and on the REST API's each
THUMBNAIL_SIDE = 192
POPULATIONS = {"child": "Children (Kermany et al. 2018, one hospital in Guangzhou), official test split",
               "adult": "Adults (RSNA Pneumonia Detection Challenge, NIH Clinical Center), held-out test split"}
CORS_ORIGINS = [origin.strip() for origin in os.environ.get("API_CORS_ORIGINS", "").split(",") if origin.strip()]

DISCLAIMER = (
    "**This is a demo, not a medical device.** It was trained on frontal chest X-rays from two hospitals "
    "(children from one, adults from another), has not been approved by any regulator and must not be used "
    "to diagnose anyone. Ask a clinician."
)
HEATMAP_NOTE = f"""
**How to read the heatmap.** Warm colours mark the regions whose features raised the score of the
class the model chose (Grad-CAM: gradients of that score weight the last convolutional layer's
feature maps). The map is coarse: it comes from an 8x8 grid, blown up to the image. SmoothGrad is
different in kind: the size of the score's gradient at each pixel, averaged over noisy copies, so it is
sharp but shows which pixels the score is *sensitive* to, not where the evidence is.

**What it does not prove.** A heatmap on the lungs does not mean the model is right, and it does not
show *what* the model saw there. Heat on text markers, the image border or outside the body is a sign
of a shortcut. The methods are different summaries of the same network; where they disagree, none of
them is the truth. (On a network that ends in global average pooling and one linear layer, as this one
does, Grad-CAM++ and Layer-CAM give the same map: both weight each feature map by the positive part of its
gradient, which is the same at every pixel. Grad-CAM keeps the negative weights before its final cut.)
Saliency maps are known to mislead (Adebayo et al. 2018); the "Compare methods" tab lets you check a
map yourself:

- **Radiologists' boxes** (adult pneumonia examples): does the map's peak fall inside a box (the
  pointing game), and how much of its mass lies there? A map can point at the lesion and still be wrong
  about why; and in CheXlocalize (Saporta et al. 2022) Grad-CAM hit the radiologists' region only 50 to
  74 % of the time, worse than radiologists.
- **Sanity check** (Adebayo et al. 2018): the same map from a copy of the model whose top layers are
  re-initialised at random. If the map barely changes (Spearman rank correlation |rho| of
  {RANDOMISATION_MAX_RHO} or more), it shows the image's edges or the architecture rather than what the
  model learned, and it cannot tell you anything about this model's decision.
- **Deletion and insertion** (Petsiuk et al. 2018): blur the pixels the map ranks first and watch the
  probability fall (deletion: a small area under the curve is good), or restore them first into a blurred
  copy and watch it come back (insertion: a large area is good). A map whose top pixels do not move the
  probability is not showing what the model uses.
"""


class RawImageUpload(gr.Image):
    """gr.Image that hands the uploaded file over undecoded, so our decoder judges every upload."""

    def get_block_name(self) -> str:
        """Render with gr.Image's Svelte component; the class name would make the browser look for a custom one."""
        return "image"

    def preprocess(self, payload):
        if payload is not None and payload.path and not (payload.url or "").startswith("data:"):
            return payload.path
        return super().preprocess(payload)


class CachedJpegImage(gr.Image):
    """Output gr.Image whose JPEG is written to Gradio's cache atomically.

    Gradio 6.31 rewrites a cached image in place, so when two requests produce the same image (the same
    example clicked twice) one can be served a half-written file: the load test's "peer closed connection".
    """

    def get_block_name(self) -> str:
        return "image"

    def postprocess(self, value):
        if isinstance(value, np.ndarray):
            value = self.write_once(value)
        return super().postprocess(value)

    def write_once(self, pixels: np.ndarray) -> str:
        """The image's path in the cache, named by its content; written through a temporary file and a rename."""
        return cache_jpeg(pixels, self.GRADIO_CACHE)


def cache_jpeg(pixels: np.ndarray, cache: str | None = None) -> str:
    """An image as a JPEG in Gradio's cache, named by its content and written once, atomically (see
    CachedJpegImage); its path, for image and gallery outputs."""
    data = encode_jpeg(pixels)
    folder = Path(cache or get_upload_folder()) / f"cxr-{content_digest(data)}"
    target = folder / "image.jpeg"
    if not target.exists():
        folder.mkdir(parents=True, exist_ok=True)
        descriptor, staging = tempfile.mkstemp(dir=folder, prefix=".image-")
        with os.fdopen(descriptor, "wb") as staged:
            staged.write(data)
        os.replace(staging, target)
    return str(target)


def thumbnail(path: Path) -> str:
    """A small JPEG of an example image in Gradio's cache, for the examples gallery."""
    return cache_jpeg(to_uint8(display_image(read_image_file(path), THUMBNAIL_SIDE)))


settings = HubSettings.from_environment()
configure_hub_timeouts(settings.timeout)
examples = available_examples(settings)
service = PneumoniaService(settings, boxes_by_digest(examples))
# The model runs here for the UI and the REST API alike: one limit for both, taken in arrival order.
model_workers = ThreadPoolExecutor(CONCURRENCY_LIMIT, thread_name_prefix="model")


def version_choices() -> list[str]:
    """The configured revision first, then every version tag on the Hub."""
    tags = [version.tag for version in service.versions()]
    return [settings.revision, *[tag for tag in tags if tag != settings.revision]]


def model_markdown(info: dict) -> str:
    """The model panel: where the model came from and how it scored on the test split."""
    metrics = info["metrics"]
    lines = [f"**Repository:** [{info['repo_id']}](https://huggingface.co/{info['repo_id']})"]
    if info["source"] == "hub":
        lines += [
            f"**Revision:** `{info['revision']}` (commit `{(info['commit'] or '')[:12]}`)",
            f"**Model card:** [README.md](https://huggingface.co/{info['repo_id']}/blob/{info['commit']}/README.md)",
        ]
    else:
        lines.append(
            f"**Source: the model bundled with this Space** (`model/`), because {info['fallback_reason']}. "
            "Its card is `model_card.md` in the Space's files."
        )
    lines.append(f"**Version:** {info['version'] or 'untagged'} · architecture `{info['architecture']}`, "
                 f"{info['image_size']}x{info['image_size']} input, decision threshold {info['threshold']:.2f}")
    gate = ("on: images that do not look like a chest X-ray are refused" if info["input_gate"]
            else "none in this model version: every image is answered")
    lines.append(f"**Input gate:** {gate}")
    if metrics.get("accuracy") is not None:
        lines.append(
            f"**Official test split ({metrics['n']} images):** accuracy {metrics['accuracy']:.3f}, "
            f"AUC {metrics['auc']:.3f}, sensitivity {metrics['sensitivity']:.3f}, "
            f"specificity {metrics['specificity']:.3f}"
        )
    return "\n\n".join(lines)


def on_model_workers(function, *args):
    """Run `function` on the model threads (shared with the REST API); decode errors become messages."""
    try:
        return model_workers.submit(function, *args).result()
    except ImageDecodeError as error:
        raise gr.Error(str(error), title="Cannot read this image") from None


def chosen_file(image_path: str | None, upload_file: str | None) -> str:
    """The file to analyse: the file input wins (for DICOM); a message when there is none."""
    if not (upload_file or image_path):
        raise gr.Error("Upload a chest X-ray or click one of the examples first.", title="No image")
    return upload_file or image_path


def analyze(image_path: str | None, upload_file: str | None = None, method: str = DEFAULT_METHOD,
            opacity: float = DEFAULT_OPACITY, version: str = "", show_boxes: bool = False):
    """Analyse the uploaded X-ray (the file input wins, for DICOM); errors become messages, and an image
    the input gate refuses gets its explanation with no probabilities and no heatmap. An example with
    radiologists' boxes gets them scored in the JSON, and drawn and described with `show_boxes`."""
    path = chosen_file(image_path, upload_file)
    analysis: Analysis = on_model_workers(service.analyze_file, path, method, opacity, version or None, show_boxes)
    panel = model_markdown(analysis.model_info)
    if analysis.refused:
        return None, analysis.decision, analysis.original, None, panel, analysis.as_json()
    return (
        analysis.prediction.probabilities,
        f"{analysis.decision}\n\nHeatmap: {analysis.method}, evidence for {analysis.prediction.label}."
        + boxes_paragraph(analysis, show_boxes),
        analysis.original,
        analysis.overlay,
        panel,
        analysis.as_json(),
    )


def boxes_paragraph(analysis: Analysis, show_boxes: bool) -> str:
    """What the map does against the radiologists' boxes when asked, or a hint that this image has some."""
    if show_boxes:
        return f"\n\n{analysis.box_statement}"
    return "\n\n_Radiologists' boxes are known for this image: tick \"Show the radiologists' boxes\"._" \
        if analysis.boxes else ""


def analyze_if_image(image_path: str | None, upload_file: str | None, method: str, opacity: float, version: str,
                     show_boxes: bool):
    """analyze() again when there is an image (the boxes were switched on or off), else nothing."""
    return analyze(image_path, upload_file, method, opacity, version, show_boxes) if upload_file or image_path \
        else gr.skip()


def compare(image_path: str | None, upload_file: str | None = None, opacity: float = DEFAULT_OPACITY,
            version: str = "", show_boxes: bool = False):
    """Every explanation method's map of the decided label side by side, each with its time and, on an
    example with radiologists' boxes, whether its peak is inside one and its mass share there."""
    comparison: Comparison = on_model_workers(service.compare_file, chosen_file(image_path, upload_file), opacity,
                                              version or None, show_boxes)
    if comparison.analysis.refused:
        return [], comparison.analysis.decision, comparison.as_json()
    gallery = [(cache_jpeg(view.overlay), method_caption(method, view.timed.seconds, view.box_scores))
               for method, view in comparison.views.items()]
    return gallery, comparison_markdown(comparison), comparison.as_json()


def method_caption(method: str, seconds: float, scores: dict) -> str:
    """A map's caption: method, time and, with boxes, the hit test and the mass share."""
    caption = f"{method}: {1000 * seconds:.0f} ms"
    if scores and scores["box_mass_share"] is None:
        caption += ", an empty map"
    elif scores:
        where = "peak in a box" if scores["box_hit"] else "peak outside the boxes"
        caption += f", {where}, {100 * scores['box_mass_share']:.0f} % of the mass in the boxes"
    return caption


def comparison_markdown(comparison: Comparison) -> str:
    """The comparison in words: what is explained, each method's time and its scores against the boxes."""
    label = comparison.analysis.prediction.label
    total = sum(view.timed.seconds for view in comparison.views.values())
    paragraphs = [f"Every method's map of the evidence for **{label}** (the model's decision), all "
                  f"{len(comparison.views)} in {1000 * total:.0f} ms."]
    views = list(comparison.views.items())
    for index, (method, view) in enumerate(views):
        same = [other for other, later in views[index + 1:]
                if np.allclose(view.timed.heatmap, later.timed.heatmap, atol=1e-3)]
        if same:
            paragraphs.append(f"{method} and {' and '.join(same)} give the same map here (see How to read the "
                              "heatmap).")
    bullets = [f"- {box_sentence(view.box_scores, method)}" for method, view in views if view.box_scores]
    return "\n\n".join([*paragraphs, "\n".join(bullets)] if bullets else paragraphs)


def compare_if_open(lab_open: bool, *inputs):
    """compare() when the "Compare methods" tab is open and there is an image, else nothing."""
    return compare(*inputs) if lab_open and (inputs[0] or inputs[1]) else gr.skip()


def run_checks(image_path: str | None, upload_file: str | None = None, opacity: float = DEFAULT_OPACITY,
               version: str = ""):
    """The sanity check (each map beside the map of a copy with its top re-initialised) and the deletion
    and insertion curves, for the "Compare methods" tab."""
    checks: LabChecks | None = on_model_workers(service.check_file, chosen_file(image_path, upload_file), opacity,
                                                version or None)
    if checks is None:
        return [], "The input gate refused this image: there is nothing to check.", None, ""
    gallery = []
    for method, check in checks.randomisation.items():
        verdict = "passes" if check.passed else "FAILS"
        gallery += [(cache_jpeg(checks.trained_overlays[method]), f"{method}: trained model"),
                    (cache_jpeg(checks.randomised_overlays[method]),
                     f"{method}: top re-initialised, rho {check.rho:.2f}, {verdict}")]
    return gallery, sanity_markdown(checks), curves_plot(checks), faithfulness_markdown(checks)


def sanity_markdown(checks: LabChecks) -> str:
    """The randomisation check's table: Spearman rho and verdict per method, with the rule."""
    lines = ["**Sanity check: model-parameter randomisation** (Adebayo et al. 2018). Each map beside the same "
             f"map from a copy of the model whose top layers (`{', '.join(checks.randomised_layers)}`) are "
             f"re-initialised at random. A method passes when the Spearman rank correlation between the two is "
             f"below {RANDOMISATION_MAX_RHO} in size: its map depends on what the model learned.", "",
             "| method | Spearman rho | sanity check |", "|---|---:|---|"]
    for method, check in checks.randomisation.items():
        lines.append(f"| {method} | {check.rho:.2f} | {'passed' if check.passed else '**failed**'} |")
    return "\n".join(lines)


def curves_plot(checks: LabChecks) -> Figure:
    """The deletion and insertion curves of every method."""
    return curves_figure(checks.curves, checks.label)


def faithfulness_markdown(checks: LabChecks) -> str:
    """Areas under the deletion and insertion curves per method."""
    lines = [f"**Deletion and insertion** (Petsiuk et al. 2018) for the probability of {checks.label}: the "
             "pixels each map ranks first are blurred first (deletion), or restored first into a blurred copy "
             "(insertion).", "", "| method | deletion AUC (lower is better) | insertion AUC (higher is better) |",
             "|---|---:|---:|"]
    for method, curve in checks.curves.items():
        lines.append(f"| {method} | {curve.deletion_auc:.3f} | {curve.insertion_auc:.3f} |")
    blurred = next(iter(checks.curves.values())).deletion[-1]
    lines += ["", f"The fully blurred copy alone scores {blurred:.2f} for {checks.label}: no deletion curve can "
                  "fall below that, whatever the map. Our models read a blurred film as pneumonia (blur looks like "
                  "haze), so a PNEUMONIA map's deletion curve stays high."]
    return "\n".join(lines)


def checks_if_open(lab_open: bool, *inputs):
    """run_checks() when the "Compare methods" tab is open and there is an image, else nothing."""
    return run_checks(*inputs) if lab_open and (inputs[0] or inputs[1]) else gr.skip()


def example_groups() -> dict[str, list[FoundExample]]:
    """The examples by population (children, adults), in manifest order."""
    groups: dict[str, list[FoundExample]] = {}
    for item in examples:
        groups.setdefault(item.example.population, []).append(item)
    return groups


def gallery_label(population: str, items: list[FoundExample]) -> str:
    """A thumbnail gallery's title: who, from where, and whether boxes come with the pneumonias."""
    boxes = "; the pneumonias have the radiologists' boxes" if any(item.boxes for item in items) else ""
    return f"{POPULATIONS.get(population, population)}{boxes}: click one, then Analyze"


def example_picker(items: list[FoundExample]):
    """The select handler of one gallery: the clicked thumbnail's image into the image input (and the file
    input emptied: it would win)."""
    def pick(selected: gr.SelectData) -> tuple[str, None]:
        return str(items[selected.index].path), None

    return pick


def model_info(version: str = "") -> dict:
    """Where the model at `version` (default: the configured revision) came from, and its metrics."""
    return service.model(version or None).info()


def show_version(version: str) -> str:
    """Load the chosen version (cached) and describe it."""
    return model_markdown(service.model(version or None).info())


with gr.Blocks(title="Chest X-ray pneumonia demo", analytics_enabled=False) as demo:
    gr.Markdown("# Chest X-ray: pneumonia or normal?\nA small CNN trained from scratch on frontal chest X-rays "
                "of children and adults, with a heatmap of where its evidence lies.")
    gr.Markdown(DISCLAIMER, elem_id="disclaimer")
    with gr.Row():
        with gr.Column(scale=1):
            with gr.Tab("Image"):
                image_input = RawImageUpload(type="filepath", label="Chest X-ray (JPEG, PNG, ...)",
                                             sources=["upload", "clipboard"], height=320)
            with gr.Tab("DICOM or other file"):
                file_input = gr.File(label="DICOM (.dcm), TIFF or any image file", file_count="single", type="filepath")
            example_galleries: dict[str, gr.Gallery] = {}
            for population, items in example_groups().items():
                example_galleries[population] = gr.Gallery(
                    [(thumbnail(item.path), item.caption) for item in items], label=gallery_label(population, items),
                    columns=3, height="auto", allow_preview=False, interactive=False, object_fit="contain",
                    elem_id=f"examples-{population}")
                example_galleries[population].select(example_picker(items), None, [image_input, file_input],
                                                     api_visibility="private")
            if not examples:
                gr.Markdown("_No example images are available here (set EXAMPLES_DIR or EXAMPLES_REPO)._")
            method_input = gr.Radio(list(METHODS), value=DEFAULT_METHOD, label="Explanation method")
            boxes_input = gr.Checkbox(False, label="Show the radiologists' boxes",
                                      info="Only the adult pneumonia examples (RSNA test split) have them.")
            opacity_input = gr.Slider(0.0, 1.0, value=DEFAULT_OPACITY, step=0.05, label="Heatmap opacity")
            version_input = gr.Dropdown(version_choices(), value=settings.revision, label="Model version",
                                        info="Tags on the Hub; switching loads that version once and keeps it.")
            analyze_button = gr.Button("Analyze", variant="primary")
        with gr.Column(scale=1):
            label_output = gr.Label(num_top_classes=2, label="Calibrated probabilities")
            decision_output = gr.Markdown(elem_id="decision")
            lab_open = gr.State(False)
            with gr.Tabs():
                with gr.Tab("Heatmap") as heatmap_tab, gr.Row():
                    # JPEG, not PNG: PIL took 108 ms to encode a 512x353 overlay as PNG here, 1.4 ms as JPEG
                    original_output = CachedJpegImage(label="Original", type="numpy", format="jpeg", interactive=False)
                    overlay_output = CachedJpegImage(label="Heatmap", type="numpy", format="jpeg", interactive=False)
                with gr.Tab("Compare methods", elem_id="compare-tab") as compare_tab:
                    compare_gallery = gr.Gallery(label="Every method's map", columns=2, height="auto",
                                                 allow_preview=False, interactive=False, object_fit="contain",
                                                 elem_id="compare-maps")
                    compare_summary = gr.Markdown(elem_id="compare-summary")
                    sanity_gallery = gr.Gallery(label="Sanity check: trained model and top re-initialised", columns=4,
                                                height="auto", allow_preview=False, interactive=False,
                                                object_fit="contain", elem_id="sanity-maps")
                    sanity_summary = gr.Markdown(elem_id="sanity-check")
                    curves_output = gr.Plot(label="Deletion and insertion curves", show_label=False,
                                            elem_id="faithfulness-curves")
                    faithfulness_summary = gr.Markdown(elem_id="faithfulness")
                    with gr.Accordion("Comparison as JSON", open=False):
                        compare_json = gr.JSON(label="Comparison")
            with gr.Accordion("How to read the heatmap (for students)", open=False):
                gr.Markdown(HEATMAP_NOTE)
            with gr.Accordion("Result as JSON", open=False):
                json_output = gr.JSON(label="Result")
    with gr.Tabs():
        build_your_data_tab(service, model_workers)
    with gr.Accordion("Model", open=True):
        model_panel = gr.Markdown(model_markdown(service.default.info()), elem_id="model-panel")

    predict_inputs = [image_input, file_input, method_input, opacity_input, version_input, boxes_input]
    predict_outputs = [label_output, decision_output, original_output, overlay_output, model_panel, json_output]
    lab_inputs = [image_input, file_input, opacity_input, version_input, boxes_input]
    checks_inputs = lab_inputs[:-1]
    compare_outputs = [compare_gallery, compare_summary, compare_json]
    checks_outputs = [sanity_gallery, sanity_summary, curves_output, faithfulness_summary]
    private = {"api_visibility": "private"}
    # The lab's heavier computations run only while its tab is open: after an analysis, or when it is opened.
    for analysis in (analyze_button.click(analyze, predict_inputs, predict_outputs, api_name="predict"),
                     boxes_input.change(analyze_if_image, predict_inputs, predict_outputs, **private)):
        analysis.success(compare_if_open, [lab_open, *lab_inputs], compare_outputs, **private).success(
            checks_if_open, [lab_open, *checks_inputs], checks_outputs, **private)
    heatmap_tab.select(lambda: False, None, lab_open, **private)
    compare_tab.select(lambda: True, None, lab_open, **private)
    compare_tab.select(compare, lab_inputs, compare_outputs, api_name="compare").success(
        run_checks, checks_inputs, checks_outputs, **private)
    version_input.change(show_version, inputs=[version_input], outputs=[model_panel], api_visibility="private")
    gr.api(model_info, api_name="model_info")

demo.queue(default_concurrency_limit=CONCURRENCY_LIMIT, max_size=MAX_QUEUE_SIZE)


def create_server(host: str = "0.0.0.0", port: int = 7860) -> FastAPI:
    """The REST API at /v1 and the UI at /, on one app: what `python app.py` serves."""
    server = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    api = create_rest_api(service, model_workers, CORS_ORIGINS, max_in_flight=CONCURRENCY_LIMIT + MAX_QUEUE_SIZE)
    server.mount(API_PREFIX, api)
    return gr.mount_gradio_app(server, demo, path="/", server_name=host, server_port=port,
                               allowed_paths=[str(item.path.parent) for item in examples], show_error=True)


if __name__ == "__main__":
    host = os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0")
    port = int(os.environ.get("GRADIO_SERVER_PORT", "7860"))
    print(f"Serving the app on http://{host}:{port} (REST API under {API_PREFIX})", flush=True)
    uvicorn.run(create_server(host, port), host=host, port=port, log_level="warning")
