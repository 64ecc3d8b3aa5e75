"""The "Your data" tab: upload a zip of labelled X-rays and see how the model does on them.

Layout and handlers only; the reading, scoring and figures are cxr_pneumonia.labelled_zip, .evaluation and
.evaluation_plots (the same as POST /v1/evaluate); every string is ui.messages': the fixed text through the page's
gr.I18n, each answer in the visitor's language (ui.messages.language_of), the library's refusals told from their codes.
The batches run on the model threads one at a time. The error images leave the disk after the page's retention time,
as the result's do.
"""

from __future__ import annotations

import html
import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from gradio.utils import get_upload_folder

from cxr_pneumonia.config import (
    DEFAULT_TARGET_SPECIFICITY,
    LABELS,
    MAX_ZIP_IMAGES,
    MAX_ZIP_TOTAL_BYTES,
    MIN_PROFILE_NORMALS,
    MIN_PROFILE_PNEUMONIAS,
    PROFILE_TARGET_RANGE,
    RECOMMENDED_PROFILE_NORMALS,
)
from cxr_pneumonia.evaluation import (
    Evaluation,
    ImageResult,
    Submit,
    Unread,
    error_paths,
    evaluate_archive,
    on_executor,
)
from cxr_pneumonia.evaluation_plots import (
    CONFUSION_TEXTS,
    RELIABILITY_TEXTS,
    ROC_TEXTS,
    confusion_figure,
    reliability_figure,
    roc_figure,
)
from cxr_pneumonia.imaging import ImageDecodeError
from cxr_pneumonia.labelled_zip import ArchiveError, open_labelled_zip
from cxr_pneumonia.service import Analysis, PneumoniaService
from cxr_pneumonia.site_profile import ProfileError, SiteProfile, read_site_profile
from ui import render
from ui.controls import ClampedSlider
from ui.files import cache_jpeg, remove_later
from ui.messages import TABLES, FixedText, LocalFormatter, counted, language_of, number, text

GALLERY_ERRORS = 12  # the most confident errors analysed in full for the gallery

METRICS = ("sensitivity", "specificity", "accuracy", "auc")  # the summary's rows, each named in ui.messages
STATE_SECONDS = 15 * 60  # an evaluation and its analysed errors stay in memory for the tab, as the page's result
SMALL_SET = 100  # under this many images, the summary says plainly that its figures are rough


def build_your_data_tab(service: PneumoniaService, workers: Executor, retention_seconds: float,
                        fixed: FixedText, site_state: gr.State, tabs: gr.Tabs) -> None:
    """The "Your data" tab inside the current gr.Tabs, with its events wired; its fixed text is the page's `fixed`.
    "Use it on this page" puts a site profile into the page's `site_state` and shows the Result tab."""
    with gr.Tab(fixed("your_data_tab"), elem_id="your-data-tab"):
        gr.Markdown(fixed("your_data_intro", max_images=MAX_ZIP_IMAGES, max_megabytes=MAX_ZIP_TOTAL_BYTES / 1e6))
        with gr.Row():
            upload = gr.File(label=fixed("your_data_upload"), file_types=[".zip"], type="filepath",
                             elem_id="your-data-zip")
            button = gr.Button(fixed("your_data_button"), variant="primary", elem_id="your-data-evaluate")
        summary = gr.Markdown(elem_id="your-data-summary")
        with gr.Row():
            # No Gradio label: it would sit over the figure's own title.
            confusion = gr.Plot(label=fixed("your_data_confusion"), show_label=False, elem_id="your-data-confusion")
            roc = gr.Plot(label=fixed("your_data_roc"), show_label=False, elem_id="your-data-roc")
            reliability = gr.Plot(label=fixed("your_data_reliability"), show_label=False,
                                  elem_id="your-data-reliability")
        slider = gr.Slider(0.0, 1.0, value=0.5, step=0.01, label=fixed("your_data_slider"),
                           elem_id="your-data-threshold")
        at_threshold = gr.Markdown(elem_id="your-data-at-threshold")
        download = gr.DownloadButton(fixed("your_data_csv"), value=None, visible=False, elem_id="your-data-csv")
        errors = gr.Gallery(label=fixed("your_data_errors"), columns=4, height="auto", allow_preview=False,
                            interactive=False, object_fit="contain", elem_id="your-data-errors",
                            elem_classes=["example-gallery"])
        with gr.Row():
            error_original = gr.Image(label=fixed("your_data_error_original"), type="filepath", interactive=False)
            error_heatmap = gr.Image(label=fixed("your_data_error_heatmap"), type="filepath", interactive=False)
        error_decision = gr.Markdown(elem_id="your-data-error-decision")
        # Shown when files were left out, headed by the handler: gr.I18n does not translate a Dataframe's headers.
        skipped = gr.Dataframe(label=fixed("your_data_skipped"), interactive=False, visible=False,
                               elem_id="your-data-skipped")
        evaluation_state = gr.State(None, time_to_live=STATE_SECONDS)
        analyses_state = gr.State([], time_to_live=STATE_SECONDS)
        site = build_site_section(fixed)

    button.click(evaluation_handler(service, workers, retention_seconds), upload,
                 [upload, summary, confusion, roc, reliability, slider, at_threshold, download, errors, skipped,
                  evaluation_state, analyses_state], api_visibility="private")
    slider.change(on_threshold, [evaluation_state, slider], at_threshold, api_visibility="private",
                  show_progress="hidden")
    errors.select(error_shower(retention_seconds), analyses_state, [error_original, error_heatmap, error_decision],
                  api_visibility="private")
    shown = [site.summary, site.download, site.use, site.fitted]
    site.fit.click(fit_handler(service, workers, retention_seconds), [upload, site.name, site.target], shown,
                   api_visibility="private")
    site.upload.upload(profile_loader(service), site.upload, [site.upload, *shown], api_visibility="private")
    site.use.click(lambda profile: (profile, gr.Tabs(selected="result-tab")), site.fitted, [site_state, tabs],
                   api_visibility="private")


def evaluation_handler(service: PneumoniaService, workers: Executor, retention_seconds: float) -> Callable:
    """The Evaluate button's handler: read the zip, score it batch by batch with progress, and fill the tab."""
    submit = on_executor(workers)

    def evaluate(request: gr.Request, zip_path: str | None,
                 progress: gr.Progress = gr.Progress()):  # noqa: B008 (Gradio's idiom)
        language = language_of(request)
        if not zip_path:
            raise gr.Error(text("your_data_no_zip", language), title=text("your_data_no_zip_title", language))
        progress(0, desc=text("your_data_opening", language))
        loaded = service.model()
        try:
            with open_labelled_zip(zip_path) as archive:
                result = evaluate_archive(loaded.model, archive, submit, progress_reporter(progress, language))
                progress(1.0, desc=text("your_data_analysing_errors", language))
                analyses = analysed_errors(service, submit, error_paths(archive, result, GALLERY_ERRORS))
        except ArchiveError as error:
            raise gr.Error(archive_message(error, language), title=text("your_data_refused_title", language)) \
                from None
        # Gradio's copy of the upload stays while the tab's results do (for "Fit a threshold"), then goes.
        remove_later([zip_path], STATE_SECONDS)
        return (gr.skip(), summary_markdown(result, loaded.version or loaded.location.revision, language,
                                            Path(zip_path).name),
                *figures(result, language), gr.update(value=round(result.threshold, 2)),
                threshold_text(result, result.threshold, language), gr.update(value=write_csv(result), visible=True),
                gallery_items(analyses, retention_seconds, language), skipped_table(result, language), result,
                analyses)

    return evaluate


def figures(result: Evaluation, language: str) -> tuple:
    """The confusion matrix, the ROC curve and the reliability diagram, in the visitor's words."""
    class_names = [render.class_name(label, language) for label in LABELS]
    fill = LocalFormatter(language).format
    return (confusion_figure(result, figure_texts("confusion", CONFUSION_TEXTS, language), class_names, fill),
            roc_figure(result, figure_texts("roc", ROC_TEXTS, language), fill),
            reliability_figure(result, figure_texts("reliability", RELIABILITY_TEXTS, language)))


def figure_texts(figure: str, names: Mapping[str, str], language: str) -> dict[str, str]:
    """A figure's words (the keys of its English `names`) from the tables, unfilled: the figure fills them in."""
    return {name: TABLES[language][f"your_data_{figure}_{name}"] for name in names}


def archive_message(error: ArchiveError | Unread, language: str) -> str:
    """Why the zip, or an entry of it, cannot be read, from the library's code (never its English sentence)."""
    return text(f"your_data_zip_{error.code}", language, **error.values)


def unread_message(unread: Unread, language: str) -> str:
    """Why a labelled file was not evaluated: the decoder's refusal or the zip's, from its code."""
    return render.decode_error_message(unread, language) if unread.decoder else archive_message(unread, language)


def analysed_errors(service: PneumoniaService, submit: Submit, errors: list[tuple[ImageResult, Path]]) -> list[tuple]:
    """Each error's full analysis (original, heatmap, decision), on the model threads; one that fails is left out."""
    analyses = []
    for image, path in errors:
        try:
            analyses.append((image, submit(lambda path=path: service.analyze_file(path)).result()))
        except ImageDecodeError:  # read once already; only a timeout on a busy machine can refuse it now
            continue
    return analyses


def progress_reporter(progress: gr.Progress, language: str) -> Callable[[int, int], None]:
    """A progress callback showing the count and the time left, from the pace so far."""
    started = time.monotonic()

    def report(done: int, total: int) -> None:
        left = (time.monotonic() - started) / done * (total - done) if done else 0.0
        progress((done, total), desc=text("your_data_progress", language, done=done, total=total, left=left),
                 unit="images")

    return report


def rounded(value: float | None, language: str) -> str:
    return text("your_data_not_measured", language) if value is None else number(value, ".3f", language)


def summary_markdown(result: Evaluation, version: str, language: str, name: str = "") -> str:
    """The headline: how many images, the metrics with their 95 % intervals, refusals, UNCERTAIN, notes."""
    counts, metrics = result.counts, result.metrics()
    layout = text("your_data_layout_csv" if result.layout == "labels.csv" else "your_data_layout_folders", language)
    table = [text("your_data_metric_header", language)]
    for key in METRICS:
        low, high = (metrics["ci95"] or {}).get(key) or (None, None)
        metric, value = text(f"your_data_{key}", language), rounded(metrics[key], language)
        if metrics[key] is not None and low is None:  # an AUC its images cannot bound (a perfect ranking, say)
            table.append(text("your_data_metric_unbounded", language, name=metric, value=value))
        else:
            table.append(text("your_data_metric_row", language, name=metric, value=value,
                              low=rounded(low, language), high=rounded(high, language)))
    if 0 < counts["n"] < SMALL_SET:
        table.append("\n" + text("your_data_small_set", language, n=counts["n"], small=SMALL_SET))
    share = counts["n_refused"] / counts["n"] if counts["n"] else 0.0
    gate = (text(counted("your_data_refused_share", counts["n_refused"], language), language, share=share, **counts)
            if result.input_gate
            else text("your_data_no_gate", language))
    paragraphs = [text("your_data_summary_head", language, n=counts["n"], layout=layout, version=version,
                       threshold=result.threshold, name=html.escape(name)), "\n".join(table),
                  *notes(result, language), gate]
    if counts["n_uncertain"]:
        paragraphs.append(text("your_data_uncertain", language, **counts))
    if counts["n_unreadable"]:
        paragraphs.append(text("your_data_unreadable", language, **counts))
    if counts["n"] and not result.errors():
        paragraphs.append(text("your_data_no_errors", language))
    return "\n\n".join(paragraphs)


def notes(result: Evaluation, language: str) -> list[str]:
    """What cannot be measured on these images, and why (the page's words for Evaluation.notes)."""
    labels = result.labels
    if not len(labels):
        return [text("your_data_none_read", language)]
    if labels.all() or not labels.any():
        return [text("your_data_only_pneumonia" if labels.all() else "your_data_only_normal", language)]
    return []


def on_threshold(request: gr.Request, result: Evaluation | None, threshold: float) -> str:
    """The slider's handler: what another threshold would give, in the visitor's language."""
    return threshold_text(result, threshold, language_of(request))


def threshold_text(result: Evaluation | None, threshold: float, language: str) -> str:
    """What another threshold would give on these images (nothing before an evaluation)."""
    if result is None:
        return ""
    at = result.at_threshold(threshold)
    return text("your_data_at_threshold", language, threshold=threshold,
                sensitivity=rounded(at["sensitivity"], language), specificity=rounded(at["specificity"], language),
                tp=at["tp"], tn=at["tn"], positives=at["tp"] + at["fn"], negatives=at["tn"] + at["fp"],
                model_threshold=result.threshold)


def write_csv(result: Evaluation) -> str:
    """The per-image CSV in Gradio's cache folder, for the download button; its path. Its columns and reasons stay
    in English, as training.evaluate's and the REST API's."""
    folder = Path(get_upload_folder())
    folder.mkdir(parents=True, exist_ok=True)
    descriptor, path = tempfile.mkstemp(dir=folder, prefix="evaluation-", suffix=".csv")
    with os.fdopen(descriptor, "w", newline="") as handle:
        handle.write(result.csv_text())
    return path


def gallery_items(analyses: list, retention_seconds: float, language: str) -> list[tuple]:
    """Each analysed error's image with what went wrong as its caption; the JPEGs leave the disk after a while."""
    items = [(cache_jpeg(analysis.original), error_caption(image, language)) for image, analysis in analyses]
    remove_later([path for path, _ in items], retention_seconds)
    return items


def error_caption(image: ImageResult, language: str) -> str:
    return text("your_data_error_caption", language, label=render.class_name(image.label, language),
                predicted=render.class_name(image.predicted, language), probability=image.probability)


def skipped_table(result: Evaluation, language: str) -> gr.Dataframe:
    """The files not evaluated, with why: unreadable ones (the decoder's or the zip's reason), ignored and
    unlabelled entries; headed in the visitor's language, hidden when there are none. The table shows its cells as
    plain text (its columns' datatype is "str"), so names and reasons go as they are: escaped, an apostrophe would
    show as &#x27;."""
    rows = [[image.name, unread_message(image.unread, language)] for image in result.unreadable]
    rows += [[name, text(f"your_data_ignored_{code}", language)] for name, code in result.ignored]
    rows += [[name, text("your_data_unlabelled_reason", language)] for name in result.unlabelled]
    headers = [text("your_data_skipped_file", language), text("your_data_skipped_why", language)]
    return gr.Dataframe({"headers": headers, "data": rows}, visible=bool(rows))


def error_decision(analysis: Analysis, language: str) -> str:
    """The page's sentence for an analysed error: its decision, or the input gate's refusal."""
    if analysis.refused:
        return render.refusal_sentence(analysis.gate, language)
    return render.decision_markdown(analysis, False, language)


def error_shower(retention_seconds: float) -> Callable:
    """The gallery's click handler: the error's original, heatmap and decision, under its file and label."""

    def show_error(request: gr.Request, analyses: list, selected: gr.SelectData):
        language = language_of(request)
        image, analysis = analyses[selected.index]
        paths = [cache_jpeg(pixels) if pixels is not None else None for pixels in (analysis.original, analysis.overlay)]
        remove_later([path for path in paths if path], retention_seconds)
        heading = text("your_data_error_heading", language, name=html.escape(image.name),
                       label=render.class_name(image.label, language))
        return *paths, f"{heading}\n\n{error_decision(analysis, language)}"

    return show_error


# --- a site threshold fitted on these X-rays (cxr_pneumonia.site_profile) ---------------------------------------

@dataclass(frozen=True)
class SiteSection:
    """The components of "Fit a threshold for these X-rays"."""

    name: gr.Textbox
    target: gr.Slider
    fit: gr.Button
    summary: gr.Markdown
    download: gr.DownloadButton
    use: gr.Button
    upload: gr.File
    fitted: gr.State


def build_site_section(fixed: FixedText) -> SiteSection:
    """The fitting controls, the fitted profile's figures, its download, "Use it on this page" and the upload of a
    saved profile."""
    with gr.Accordion(fixed("site_fit_title"), open=True, elem_id="site-fit"):
        gr.Markdown(fixed("site_fit_intro", minimum=MIN_PROFILE_NORMALS, recommended=RECOMMENDED_PROFILE_NORMALS))
        with gr.Row(equal_height=True):
            name = gr.Textbox(label=fixed("site_name"), placeholder=fixed("site_name_placeholder"), max_length=64,
                              elem_id="site-name")
            low, high = PROFILE_TARGET_RANGE
            target = ClampedSlider(round(100 * low), round(100 * high), value=round(100 * DEFAULT_TARGET_SPECIFICITY),
                                   step=1, label=fixed("site_target"), elem_id="site-target")
        fit = gr.Button(fixed("site_fit_button"), variant="primary", elem_id="site-fit-button")
        summary = gr.Markdown(elem_id="site-fitted")
        with gr.Row():
            download = gr.DownloadButton(fixed("site_download"), visible=False, elem_id="site-download")
            use = gr.Button(fixed("site_use"), variant="primary", visible=False, elem_id="site-use")
        upload = gr.File(label=fixed("site_upload"), file_types=[".json"], type="filepath", height=140,
                         elem_id="site-upload")
    return SiteSection(name, target, fit, summary, download, use, upload, gr.State(None, time_to_live=STATE_SECONDS))


def fit_handler(service: PneumoniaService, workers: Executor, retention_seconds: float) -> Callable:
    """The Fit button's handler: the zip's X-rays scored with progress, the profile fitted and offered."""
    submit = on_executor(workers)

    def fit(request: gr.Request, zip_path: str | None, site: str, target: float,
            progress: gr.Progress = gr.Progress()):  # noqa: B008 (Gradio's idiom)
        language = language_of(request)
        if not zip_path:
            raise gr.Error(text("your_data_no_zip", language), title=text("your_data_no_zip_title", language))
        progress(0, desc=text("your_data_opening", language))
        try:
            with open_labelled_zip(zip_path) as archive:
                profile = service.fit_profile(archive, site, target / 100, None, submit,
                                              progress_reporter(progress, language))
        except ArchiveError as error:
            raise gr.Error(archive_message(error, language), title=text("site_refused_title", language)) from None
        except ProfileError as error:
            raise gr.Error(profile_message(error, language), title=text("site_refused_title", language)) from None
        finally:
            remove_later([zip_path], STATE_SECONDS)  # as after an evaluation
        return offered(profile, retention_seconds, language)

    return fit


def profile_loader(service: PneumoniaService) -> Callable:
    """The upload of a saved profile: read, checked against the served model, offered as if just fitted."""

    def load(request: gr.Request, path: str | None):
        language = language_of(request)
        if not path:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        try:
            profile = read_site_profile(path)
            service.serving(None, profile)  # ProfileMismatchError for another model's
        except ProfileError as error:
            raise gr.Error(profile_message(error, language), title=text("site_refused_title", language)) from None
        finally:
            Path(path).unlink(missing_ok=True)  # Gradio's copy of the upload: nothing is kept
        return None, profile_markdown(profile, language), gr.DownloadButton(visible=False), gr.Button(visible=True), \
            profile

    return load


def offered(profile: SiteProfile, retention_seconds: float, language: str) -> tuple:
    """The fitted profile's figures, its file to download (removed after a while) and "Use it on this page"."""
    path = write_profile(profile)
    remove_later([path], max(retention_seconds, STATE_SECONDS))
    return (profile_markdown(profile, language), gr.DownloadButton(value=path, visible=True),
            gr.Button(visible=True), profile)


def profile_message(error: ProfileError, language: str) -> str:
    """Why a profile cannot be fitted or used, from its code."""
    key = f"site_error_{error.code}"
    return text(key, language, **error.values) if key in TABLES[language] else text("site_error_malformed", language)


def profile_markdown(profile: SiteProfile, language: str) -> str:
    """The threshold, the expected specificity with its lower bound, the sensitivity when pneumonias were given,
    and the warnings."""
    lines = [text("site_fitted", language, site=html.escape(profile.site), threshold=100 * profile.threshold,
                  n=profile.n_normal, refused=profile.n_refused, target=100 * profile.target_specificity,
                  specificity=100 * profile.expected_specificity, lower=100 * profile.specificity_lower_bound)]
    if profile.sensitivity is not None:
        low, high = profile.sensitivity_interval
        lines.append(text("site_sensitivity", language, sensitivity=100 * profile.sensitivity, low=100 * low,
                          high=100 * high, n=profile.n_pneumonia))
    else:
        lines.append(text("site_no_sensitivity", language, n=profile.n_pneumonia, minimum=MIN_PROFILE_PNEUMONIAS))
    lines += [text(f"site_warning_{warning}", language, recommended=RECOMMENDED_PROFILE_NORMALS)
              for warning in profile.warnings]
    lines.append(text("site_model", language, version=profile.model_version))
    return "\n\n".join(lines)


def write_profile(profile: SiteProfile) -> str:
    """The profile as a JSON file in Gradio's cache folder, for the download button; its path."""
    folder = Path(get_upload_folder())
    folder.mkdir(parents=True, exist_ok=True)
    slug = "".join(character if character.isalnum() else "-" for character in profile.site)[:40].strip("-") or "site"
    descriptor, path = tempfile.mkstemp(dir=folder, prefix=f"site-profile-{slug}-", suffix=".json")
    with os.fdopen(descriptor, "w") as handle:
        json.dump(profile.to_json(), handle, indent=2)
    return path
