"""Gradio Space: pneumonia or normal on a pediatric chest X-ray, with a Grad-CAM heatmap.

A thin UI over the `cxr_pneumonia` library. Run with `python app.py`.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path

# Uploads are medical images and the Space may run offline: no telemetry, set before the imports read it.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # server logs, not a terminal

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from cxr_pneumonia.examples import available_examples  # noqa: E402
from cxr_pneumonia.explain import DEFAULT_METHOD, METHODS  # noqa: E402
from cxr_pneumonia.hub import HubSettings, configure_hub_timeouts  # noqa: E402
from cxr_pneumonia.imaging import ImageDecodeError  # noqa: E402
from cxr_pneumonia.service import Analysis, PneumoniaService  # noqa: E402

CONCURRENCY_LIMIT = int(os.environ.get("CONCURRENCY_LIMIT", "2"))  # requests computed at once; README "Performance"
MAX_QUEUE_SIZE = 64

DISCLAIMER = (
    "**This is a demo, not a medical device.** It was trained on one hospital's pediatric X-rays, "
    "has not been approved by any regulator and must not be used to diagnose anyone. Ask a clinician."
)
HEATMAP_NOTE = """
**How to read the heatmap.** Warm colours mark the regions whose features raised the score of the
class the model chose (Grad-CAM: gradients of that score weight the last convolutional layer's
feature maps). The map is coarse: it comes from an 8x8 grid, blown up to the image.

**What it does not prove.** A heatmap on the lungs does not mean the model is right, and it does not
show *what* the model saw there. Heat on text markers, the image border or outside the body is a sign
of a shortcut. Grad-CAM, Grad-CAM++ and Layer-CAM are different summaries of the same network; where
they disagree, none of them is the truth.
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

    JPEG_QUALITY = 90

    def get_block_name(self) -> str:
        return "image"

    def postprocess(self, value):
        if isinstance(value, np.ndarray):
            value = self.write_once(value)
        return super().postprocess(value)

    def write_once(self, pixels: np.ndarray) -> str:
        """The image's path in the cache, named by its content; written through a temporary file and a rename."""
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=self.JPEG_QUALITY)
        data = buffer.getvalue()
        folder = Path(self.GRADIO_CACHE) / f"cxr-{hashlib.sha256(data).hexdigest()}"
        target = folder / "image.jpeg"
        if not target.exists():
            folder.mkdir(parents=True, exist_ok=True)
            descriptor, staging = tempfile.mkstemp(dir=folder, prefix=".image-")
            with os.fdopen(descriptor, "wb") as staged:
                staged.write(data)
            os.replace(staging, target)
        return str(target)


settings = HubSettings.from_environment()
configure_hub_timeouts(settings.timeout)
service = PneumoniaService(settings)
examples = available_examples(settings)


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
    lines.append("**Input gate:** " + ("on: images that do not look like a chest X-ray are refused"
                                       if info["input_gate"] else "none in this model version: every image is answered"))
    if metrics.get("accuracy") is not None:
        lines.append(
            f"**Official test split ({metrics['n']} images):** accuracy {metrics['accuracy']:.3f}, "
            f"AUC {metrics['auc']:.3f}, sensitivity {metrics['sensitivity']:.3f}, specificity {metrics['specificity']:.3f}"
        )
    return "\n\n".join(lines)


def analyze(image_path: str | None, upload_file: str | None, method: str, opacity: float, version: str):
    """Analyse the uploaded X-ray (the file input wins, for DICOM); errors become messages, and an image
    the input gate refuses gets its explanation with no probabilities and no heatmap."""
    path = upload_file or image_path
    if not path:
        raise gr.Error("Upload a chest X-ray or click one of the examples first.", title="No image")
    try:
        analysis: Analysis = service.analyze_file(path, method, opacity, version or None)
    except ImageDecodeError as error:
        raise gr.Error(str(error), title="Cannot read this image") from None
    panel = model_markdown(analysis.model_info)
    if analysis.refused:
        return None, analysis.decision, analysis.original, None, panel, analysis.as_json()
    return (
        analysis.prediction.probabilities,
        f"{analysis.decision}\n\nHeatmap: {analysis.method}, evidence for {analysis.prediction.label}.",
        analysis.original,
        analysis.overlay,
        panel,
        analysis.as_json(),
    )


def model_info(version: str = "") -> dict:
    """Where the model at `version` (default: the configured revision) came from, and its metrics."""
    return service.model(version or None).info()


def show_version(version: str) -> str:
    """Load the chosen version (cached) and describe it."""
    return model_markdown(service.model(version or None).info())


with gr.Blocks(title="Chest X-ray pneumonia demo", analytics_enabled=False) as demo:
    gr.Markdown("# Chest X-ray: pneumonia or normal?\nA small CNN trained from scratch on pediatric "
                "chest X-rays, with a heatmap of where its evidence lies.")
    gr.Markdown(DISCLAIMER, elem_id="disclaimer")
    with gr.Row():
        with gr.Column(scale=1):
            with gr.Tab("Image"):
                image_input = RawImageUpload(type="filepath", label="Chest X-ray (JPEG, PNG, ...)",
                                             sources=["upload", "clipboard"], height=320)
            with gr.Tab("DICOM or other file"):
                file_input = gr.File(label="DICOM (.dcm), TIFF or any image file", file_count="single", type="filepath")
            if examples:
                gr.Examples(
                    examples=[[str(path)] for path, _ in examples],
                    example_labels=[f"{example.label}: {example.note}" for _, example in examples],
                    inputs=[image_input],
                    label="Examples from the official test split (click one, then Analyze)",
                )
            else:
                gr.Markdown("_No example images are available here (set EXAMPLES_DIR or EXAMPLES_REPO)._")
            method_input = gr.Radio(list(METHODS), value=DEFAULT_METHOD, label="Explanation method")
            opacity_input = gr.Slider(0.0, 1.0, value=0.4, step=0.05, label="Heatmap opacity")
            version_input = gr.Dropdown(version_choices(), value=settings.revision, label="Model version",
                                        info="Tags on the Hub; switching loads that version once and keeps it.")
            analyze_button = gr.Button("Analyze", variant="primary")
        with gr.Column(scale=1):
            label_output = gr.Label(num_top_classes=2, label="Calibrated probabilities")
            decision_output = gr.Markdown(elem_id="decision")
            with gr.Row():
                # JPEG, not PNG: PIL took 108 ms to encode a 512x353 overlay as PNG here, 1.4 ms as JPEG
                original_output = CachedJpegImage(label="Original", type="numpy", format="jpeg", interactive=False)
                overlay_output = CachedJpegImage(label="Heatmap", type="numpy", format="jpeg", interactive=False)
            with gr.Accordion("How to read the heatmap (for students)", open=False):
                gr.Markdown(HEATMAP_NOTE)
            with gr.Accordion("Result as JSON", open=False):
                json_output = gr.JSON(label="Result")
    with gr.Accordion("Model", open=True):
        model_panel = gr.Markdown(model_markdown(service.default.info()), elem_id="model-panel")

    analyze_button.click(
        analyze,
        inputs=[image_input, file_input, method_input, opacity_input, version_input],
        outputs=[label_output, decision_output, original_output, overlay_output, model_panel, json_output],
        api_name="predict",
    )
    version_input.change(show_version, inputs=[version_input], outputs=[model_panel], api_visibility="private")
    gr.api(model_info, api_name="model_info")

demo.queue(default_concurrency_limit=CONCURRENCY_LIMIT, max_size=MAX_QUEUE_SIZE)

if __name__ == "__main__":
    demo.launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"),
        allowed_paths=[str(path.parent) for path, _ in examples],
        show_error=True,
    )
