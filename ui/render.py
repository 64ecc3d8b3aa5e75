"""The page's text and figures made from the library's results, every string from ui.messages."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from cxr_pneumonia.examples import FoundExample
from cxr_pneumonia.explanation_quality import RANDOMISATION_MAX_RHO
from cxr_pneumonia.gate import GateResult
from cxr_pneumonia.lab import RandomisationCheck, curves_figure
from cxr_pneumonia.model import Prediction
from cxr_pneumonia.service import Analysis, Comparison, LabChecks, MethodView
from ui.messages import MESSAGES, STUDENT_NOTE, text


def decision_markdown(analysis: Analysis, show_boxes: bool) -> str:
    """The answer in one plain sentence, the map shown and what it does against the radiologists' boxes."""
    prediction = analysis.prediction
    percent = 100 * prediction.pneumonia_probability
    key = {"PNEUMONIA": "decision_pneumonia", "NORMAL": "decision_normal"}.get(prediction.answer, "decision_uncertain")
    lines = [text(key, percent=percent), text("heatmap_line", method=analysis.method, label=prediction.label)]
    if show_boxes:
        lines.append(analysis.box_statement if analysis.boxes else text("no_boxes"))
    elif analysis.boxes:
        lines.append(text("boxes_hint"))
    return "\n\n".join(lines)


def refusal_sentence(gate: GateResult) -> str:
    """A refusal in one plain sentence: what the image looks like, when the gate knows, and what to upload."""
    key = f"kind_{gate.kind}"
    return text("refusal", looks_like=MESSAGES[key]) if key in MESSAGES else text("refusal_unknown")


def details_markdown(prediction: Prediction) -> str:
    """The probability against the threshold, and the uncertain band when the model has one."""
    band = prediction.uncertain_band
    band_text = text("details_band", low=100 * band[0], high=100 * band[1]) if band else text("details_no_band")
    return text("details_prediction", percent=100 * prediction.pneumonia_probability,
                threshold=100 * prediction.threshold, band=band_text)


def prevalence_markdown(prediction: Prediction, prevalence: float) -> str:
    """The probability at the prevalence chosen, and two lines on why; or that this version cannot say."""
    if prediction.calibrated_prevalence is None:
        return text("prevalence_unavailable")
    return "\n\n".join([text("prevalence_result", prevalence=100 * prevalence,
                             percent=100 * prediction.probability_at(prevalence)),
                        text("prevalence_why", calibrated=100 * prediction.calibrated_prevalence)])


def reference_markdown(example: FoundExample | None) -> str:
    """An example's reference label and source; nothing for an upload."""
    if example is None:
        return ""
    source = MESSAGES.get(f"source_{example.example.source}", example.example.source)
    return text("reference", label=example.example.label, source=source, kind=example.example.kind)


def model_markdown(info: dict) -> str:
    """The model panel: where the model came from, its version, its gate and its test metrics per source."""
    repo = info["repo_id"]
    lines = [text("panel_repository", repo=repo)]
    if info["source"] == "hub":
        commit = info["commit"] or ""
        lines += [text("panel_revision", revision=info["revision"], commit=commit[:12]),
                  text("panel_card", repo=repo, commit=commit)]
    else:
        lines.append(text("panel_bundled", reason=info["fallback_reason"]))
    lines.append(text("panel_version", version=info["version"] or text("untagged"), architecture=info["architecture"],
                      size=info["image_size"], threshold=info["threshold"]))
    lines.append(text("panel_gate_on" if info["input_gate"] else "panel_gate_off"))
    rows = [text("panel_test_row", source=MESSAGES.get(f"source_name_{source}", source), **metrics)
            for source, metrics in info.get("test_by_source", {}).items()
            if all(metrics.get(key) is not None for key in ("n", "accuracy", "auc", "sensitivity", "specificity"))]
    if rows:
        lines.append("\n".join([text("panel_tests"), *rows]))
    return "\n\n".join(lines)


def student_note(info: dict) -> str:
    """The note for students, with the grid Grad-CAM's map really comes from."""
    return STUDENT_NOTE.format(grid=info["gradcam_grid"], max_rho=RANDOMISATION_MAX_RHO)


def method_caption(method: str, view: MethodView, check: RandomisationCheck | None, pending: bool = True) -> str:
    """A map's complete caption: method, time, the box scores (when known) and the sanity check (when done, or
    that it is running when `pending`)."""
    scores = view.box_scores
    boxes = ""
    if scores and scores["box_mass_share"] is None:
        boxes = text("caption_box_empty")
    elif scores:
        boxes = text("caption_box", where=text("inside" if scores["box_hit"] else "outside"),
                     share=100 * scores["box_mass_share"])
    if check is not None:
        sanity = text("caption_sanity", rho=check.rho, verdict=text("passes" if check.passed else "fails"))
    else:
        sanity = text("caption_sanity_pending") if pending else ""
    return text("caption", method=method, ms=1000 * view.timed.seconds, boxes=boxes, sanity=sanity)


def comparison_markdown(comparison: Comparison) -> str:
    """What the lab explains, how long all the maps took, and which methods give the same map."""
    views = list(comparison.views.items())
    total = sum(view.timed.seconds for _, view in views)
    paragraphs = [text("lab_intro", label=comparison.analysis.prediction.label, count=len(views), ms=1000 * total)]
    for index, (method, view) in enumerate(views):
        same = [other for other, later in views[index + 1:]
                if np.allclose(view.timed.heatmap, later.timed.heatmap, atol=1e-3)]
        if same:
            paragraphs.append(text("lab_same_maps", first=method, others=" and ".join(same)))
    return "\n\n".join(paragraphs)


def sanity_markdown(checks: LabChecks) -> str:
    """The randomisation check's table: Spearman rho and verdict per method, with the rule."""
    rows = [text("sanity_row", method=method, rho=check.rho, verdict=text("passed" if check.passed else "failed"))
            for method, check in checks.randomisation.items()]
    return "\n".join([text("sanity_title", layers=", ".join(checks.randomised_layers), limit=RANDOMISATION_MAX_RHO),
                      "", text("sanity_header"), *rows])


def curves_plot(checks: LabChecks) -> Figure:
    """The deletion and insertion curves of every method."""
    return curves_figure(checks.curves, checks.label)


def faithfulness_markdown(checks: LabChecks) -> str:
    """Areas under the deletion and insertion curves per method, and the blurred copy's floor."""
    rows = [text("faithfulness_row", method=method, deletion=curve.deletion_auc, insertion=curve.insertion_auc)
            for method, curve in checks.curves.items()]
    blurred = next(iter(checks.curves.values())).deletion[-1]
    return "\n".join([text("faithfulness_title", label=checks.label), "", text("faithfulness_header"), *rows, "",
                      text("faithfulness_baseline", blurred=blurred, label=checks.label)])
