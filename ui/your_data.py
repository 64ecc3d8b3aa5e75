"""The "Your data" tab: upload a zip of labelled X-rays and see how the model does on them.

Layout and handlers only; the reading, scoring and figures are cxr_pneumonia.labelled_zip, .evaluation and
.evaluation_plots (the same as POST /v1/evaluate). The batches run on the model threads one at a time.
"""

from __future__ import annotations

import html
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path

import gradio as gr
from gradio.utils import get_upload_folder

from cxr_pneumonia.config import MAX_ZIP_IMAGES, MAX_ZIP_TOTAL_BYTES
from cxr_pneumonia.evaluation import Evaluation, ImageResult, Submit, error_paths, evaluate_archive, on_executor
from cxr_pneumonia.evaluation_plots import confusion_figure, reliability_figure, roc_figure
from cxr_pneumonia.imaging import ImageDecodeError
from cxr_pneumonia.labelled_zip import ArchiveError, open_labelled_zip
from cxr_pneumonia.service import PneumoniaService

GALLERY_ERRORS = 12  # the most confident errors analysed in full for the gallery

# The tab's user-facing strings. To merge into ui/messages.py's table when the page rewrite lands.
MESSAGES = {
    "tab": "Your data",
    "intro": (
        "**How does the model do on your own labelled X-rays?** Upload one zip, in either layout:\n"
        "- folders named `NORMAL` and `PNEUMONIA`, at any depth (the nearest such folder gives the label);\n"
        "- a `labels.csv` with the columns `filename,label` beside the images.\n\n"
        f"Any format the app reads counts, DICOM included; at most {MAX_ZIP_IMAGES:,} images and "
        f"{MAX_ZIP_TOTAL_BYTES / 1e6:,.0f} MB unzipped. The images are read in a temporary folder that is "
        "deleted when the evaluation ends; nothing is kept."
    ),
    "upload": "Zip of labelled X-rays",
    "button": "Evaluate",
    "no_zip": "Upload a zip of labelled X-rays first.",
    "no_zip_title": "No zip",
    "refused_title": "Cannot evaluate this zip",
    "opening": "Opening the zip",
    "progress": "{done} of {total} images analysed, about {left:.0f} s left",
    "analysing_errors": "Analysing the errors for the gallery",
    "summary_head": "**{n} images evaluated** ({layout}) with the model {version} at its threshold {threshold:.2f}.",
    "metric_row": "| {name} | {value} | {low} to {high} |",
    "refused": ("**Input gate:** refused {n_refused} of {n} images ({share:.0%}); as on the command line, the "
                "metrics above count them with their probability."),
    "no_gate": "**Input gate:** this model has none.",
    "uncertain": ("**UNCERTAIN:** {n_uncertain} of {n} images fall in the model's uncertain band, where a clinician "
                  "must read the X-ray; the metrics take the decision at the threshold."),
    "unreadable": "**Not read:** {n_unreadable} file(s); the table below gives each reason.",
    "confusion": "Confusion matrix",
    "roc": "ROC curve",
    "reliability": "Reliability diagram",
    "slider": "Another threshold (this only shows; the model keeps its own)",
    "at_threshold": ("At threshold **{threshold:.2f}** these images would give sensitivity **{sensitivity}** "
                     "({tp} of {positives} pneumonias found) and specificity **{specificity}** ({tn} of {negatives} "
                     "normals cleared). The model's threshold stays {model_threshold:.2f}."),
    "skipped": "Files not evaluated, with the reason",
    "skipped_columns": ["file", "why"],
    "unlabelled_reason": "no label: not inside a NORMAL or PNEUMONIA folder, nor named in labels.csv",
    "errors": "The model's errors, most confident first: click one for its full analysis",
    "error_caption": "{label} read as {predicted} ({probability:.0%} pneumonia)",
    "error_heading": "**{name}**, labelled {label} in your zip.",
    "no_errors": "The model decided every image correctly at its threshold.",
    "csv": "Download the per-image results (CSV)",
    "error_original": "Original",
    "error_heatmap": "Heatmap",
    "not_measured": "n/a",
}
METRIC_NAMES = {"sensitivity": "Sensitivity", "specificity": "Specificity", "accuracy": "Accuracy", "auc": "AUC"}


def build_your_data_tab(service: PneumoniaService, workers: Executor) -> None:
    """The "Your data" tab inside the current gr.Blocks, with its events wired."""
    with gr.Tab(MESSAGES["tab"], elem_id="your-data-tab"):
        gr.Markdown(MESSAGES["intro"])
        with gr.Row():
            upload = gr.File(label=MESSAGES["upload"], file_types=[".zip"], type="filepath", elem_id="your-data-zip")
            button = gr.Button(MESSAGES["button"], variant="primary", elem_id="your-data-evaluate")
        summary = gr.Markdown(elem_id="your-data-summary")
        with gr.Row():
            confusion = gr.Plot(label=MESSAGES["confusion"], elem_id="your-data-confusion")
            roc = gr.Plot(label=MESSAGES["roc"], elem_id="your-data-roc")
            reliability = gr.Plot(label=MESSAGES["reliability"], elem_id="your-data-reliability")
        slider = gr.Slider(0.0, 1.0, value=0.5, step=0.01, label=MESSAGES["slider"], elem_id="your-data-threshold")
        at_threshold = gr.Markdown(elem_id="your-data-at-threshold")
        download = gr.DownloadButton(MESSAGES["csv"], value=None, visible=False, elem_id="your-data-csv")
        errors = gr.Gallery(label=MESSAGES["errors"], columns=6, height=260, allow_preview=False,
                            interactive=False, object_fit="contain", elem_id="your-data-errors")
        with gr.Row():
            error_original = gr.Image(label=MESSAGES["error_original"], interactive=False, format="jpeg")
            error_heatmap = gr.Image(label=MESSAGES["error_heatmap"], interactive=False, format="jpeg")
        error_decision = gr.Markdown(elem_id="your-data-error-decision")
        skipped = gr.Dataframe(headers=MESSAGES["skipped_columns"], label=MESSAGES["skipped"], interactive=False,
                               elem_id="your-data-skipped")
        evaluation_state, analyses_state = gr.State(None), gr.State([])

    button.click(evaluation_handler(service, workers), upload,
                 [upload, summary, confusion, roc, reliability, slider, at_threshold, download, errors, skipped,
                  evaluation_state, analyses_state], api_visibility="private")
    slider.change(threshold_text, [evaluation_state, slider], at_threshold, api_visibility="private",
                  show_progress="hidden")
    errors.select(show_error, analyses_state, [error_original, error_heatmap, error_decision],
                  api_visibility="private")


def evaluation_handler(service: PneumoniaService, workers: Executor) -> Callable:
    """The Evaluate button's handler: read the zip, score it batch by batch with progress, and fill the tab."""
    submit = on_executor(workers)

    def evaluate(zip_path: str | None, progress: gr.Progress = gr.Progress()):  # noqa: B008 (Gradio's idiom)
        if not zip_path:
            raise gr.Error(MESSAGES["no_zip"], title=MESSAGES["no_zip_title"])
        progress(0, desc=MESSAGES["opening"])
        loaded = service.model()
        try:
            with open_labelled_zip(zip_path) as archive:
                result = evaluate_archive(loaded.model, archive, submit, progress_reporter(progress))
                progress(1.0, desc=MESSAGES["analysing_errors"])
                analyses = analysed_errors(service, submit, error_paths(archive, result, GALLERY_ERRORS))
        except ArchiveError as error:
            raise gr.Error(str(error), title=MESSAGES["refused_title"]) from None
        Path(zip_path).unlink(missing_ok=True)  # Gradio's copy of the upload: nothing is kept
        return (None, summary_markdown(result, loaded.version or loaded.location.revision), confusion_figure(result),
                roc_figure(result), reliability_figure(result), gr.update(value=result.threshold),
                threshold_text(result, result.threshold), gr.update(value=write_csv(result), visible=True),
                gallery_items(analyses), skipped_rows(result), result, analyses)

    return evaluate


def analysed_errors(service: PneumoniaService, submit: Submit, errors: list[tuple[ImageResult, Path]]) -> list[tuple]:
    """Each error's full analysis (original, heatmap, decision), on the model threads; one that fails is left out."""
    analyses = []
    for image, path in errors:
        try:
            analyses.append((image, submit(lambda path=path: service.analyze_file(path)).result()))
        except ImageDecodeError:  # read once already; only a timeout on a busy machine can refuse it now
            continue
    return analyses


def progress_reporter(progress: gr.Progress) -> Callable[[int, int], None]:
    """A progress callback showing the count and the time left, from the pace so far."""
    started = time.monotonic()

    def report(done: int, total: int) -> None:
        left = (time.monotonic() - started) / done * (total - done) if done else 0.0
        progress((done, total), desc=MESSAGES["progress"].format(done=done, total=total, left=left), unit="images")

    return report


def rounded(value: float | None) -> str:
    return MESSAGES["not_measured"] if value is None else f"{value:.3f}"


def summary_markdown(result: Evaluation, version: str) -> str:
    """The headline: how many images, the metrics with their 95 % intervals, refusals, UNCERTAIN, notes."""
    counts, metrics = result.counts, result.metrics()
    layout = "labels.csv" if result.layout == "labels.csv" else "labelled by their NORMAL and PNEUMONIA folders"
    table = ["| | value | 95 % interval |", "|---|---:|---|"]
    for key, name in METRIC_NAMES.items():
        low, high = (metrics["ci95"] or {}).get(key) or (None, None)
        table.append(MESSAGES["metric_row"].format(name=name, value=rounded(metrics[key]), low=rounded(low),
                                                   high=rounded(high)))
    share = counts["n_refused"] / counts["n"] if counts["n"] else 0.0
    paragraphs = [MESSAGES["summary_head"].format(n=counts["n"], layout=layout, version=version,
                                                  threshold=result.threshold), "\n".join(table),
                  *(f"_{note}_" for note in result.notes),
                  MESSAGES["refused"].format(share=share, **counts) if result.input_gate else MESSAGES["no_gate"]]
    if counts["n_uncertain"]:
        paragraphs.append(MESSAGES["uncertain"].format(**counts))
    if counts["n_unreadable"]:
        paragraphs.append(MESSAGES["unreadable"].format(**counts))
    if counts["n"] and not result.errors():
        paragraphs.append(MESSAGES["no_errors"])
    return "\n\n".join(paragraphs)


def threshold_text(result: Evaluation | None, threshold: float) -> str:
    """What another threshold would give on these images (nothing before an evaluation)."""
    if result is None:
        return ""
    at = result.at_threshold(threshold)
    return MESSAGES["at_threshold"].format(
        threshold=threshold, sensitivity=rounded(at["sensitivity"]), specificity=rounded(at["specificity"]),
        tp=at["tp"], tn=at["tn"], positives=at["tp"] + at["fn"], negatives=at["tn"] + at["fp"],
        model_threshold=result.threshold)


def write_csv(result: Evaluation) -> str:
    """The per-image CSV in Gradio's cache folder, for the download button; its path."""
    folder = Path(get_upload_folder())
    folder.mkdir(parents=True, exist_ok=True)
    descriptor, path = tempfile.mkstemp(dir=folder, prefix="evaluation-", suffix=".csv")
    with os.fdopen(descriptor, "w", newline="") as handle:
        handle.write(result.csv_text())
    return path


def gallery_items(analyses: list) -> list[tuple]:
    """Each analysed error's image with what went wrong as its caption."""
    return [(analysis.original, error_caption(image)) for image, analysis in analyses]


def error_caption(image: ImageResult) -> str:
    return MESSAGES["error_caption"].format(label=image.label, predicted=image.predicted,
                                            probability=image.probability)


def skipped_rows(result: Evaluation) -> list[list[str]]:
    """The files not evaluated: unreadable ones with the decoder's reason, ignored and unlabelled entries."""
    rows = [[image.name, image.error] for image in result.unreadable]
    rows += [[name, reason] for name, reason in result.ignored]
    rows += [[name, MESSAGES["unlabelled_reason"]] for name in result.unlabelled]
    return [[html.escape(name), html.escape(reason)] for name, reason in rows]


def show_error(analyses: list, selected: gr.SelectData):
    """The clicked error's full analysis: the original, the heatmap and the decision, under its file and label."""
    image, analysis = analyses[selected.index]
    heading = MESSAGES["error_heading"].format(name=html.escape(image.name), label=image.label)
    return analysis.original, analysis.overlay, f"{heading}\n\n{analysis.decision}"
