"""The page's text and figures made from the library's results, every string from ui.messages in the visitor's
language (`language`: a key of ui.messages.TABLES)."""

from __future__ import annotations

import html
from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

from cxr_pneumonia.evaluation import Unread
from cxr_pneumonia.examples import FoundExample
from cxr_pneumonia.explanation_quality import RANDOMISATION_MAX_RHO
from cxr_pneumonia.gate import GateResult
from cxr_pneumonia.imaging import ImageDecodeError
from cxr_pneumonia.lab import RandomisationCheck, curves_figure
from cxr_pneumonia.model import Prediction
from cxr_pneumonia.service import Analysis, Comparison, LabChecks, MethodView, UnknownVersionError
from cxr_pneumonia.site_profile import SiteProfile
from ui.messages import TABLES, text


def class_name(label: str, language: str) -> str:
    """A class of the model (PNEUMONIA, NORMAL) in the visitor's language."""
    return text(f"class_{label}", language)


def probabilities(prediction: Prediction, language: str) -> dict[str, float]:
    """The probabilities for gr.Label, by class name in the visitor's language."""
    return {class_name(label, language): value for label, value in prediction.probabilities.items()}


def decision_markdown(analysis: Analysis, show_boxes: bool, language: str) -> str:
    """The answer in one plain sentence, the map shown and what it does against the radiologists' boxes."""
    prediction = analysis.prediction
    percent = 100 * prediction.pneumonia_probability
    key = {"PNEUMONIA": "decision_pneumonia", "NORMAL": "decision_normal"}.get(prediction.answer, "decision_uncertain")
    lines = [text(key, language, percent=percent)]
    if (site := analysis.model_info.get("site_profile")) is not None:
        lines.append(text("decision_at_site", language, site=html.escape(site["site"]), n=site["n_normal"],
                          threshold=100 * site["threshold"]))
    lines.append(text("heatmap_line", language, method=analysis.method, label=class_name(prediction.label, language)))
    if show_boxes:
        lines.append(box_sentence(analysis, language) if analysis.boxes else text("no_boxes", language))
    elif analysis.boxes:
        lines.append(text("boxes_hint", language))
    return "\n\n".join(line for line in lines if line)


def site_note(profile: SiteProfile | None, language: str) -> str:
    """Above the answer while a site profile is in use: whose threshold decides, and how sure its specificity is."""
    if profile is None:
        return ""
    return text("site_note", language, site=html.escape(profile.site), n=profile.n_normal,
                threshold=100 * profile.threshold, specificity=100 * profile.expected_specificity,
                lower=100 * profile.specificity_lower_bound)


def box_sentence(analysis: Analysis, language: str) -> str:
    """Where the map lies against the radiologists' boxes, in one sentence."""
    scores = analysis.box_scores
    if not scores:
        return ""
    subject = {"method": analysis.method, "label": class_name(analysis.prediction.label, language)}
    if scores["box_mass_share"] is None:
        return text("box_sentence_empty", language, **subject)
    return text("box_sentence", language, **subject, where=text("inside" if scores["box_hit"] else "outside", language),
                share=100 * scores["box_mass_share"], ratio=scores["box_mass_ratio"])


def refusal_sentence(gate: GateResult, language: str) -> str:
    """A refusal in one plain sentence: what the image looks like, when the gate knows, and what to upload."""
    key = f"kind_{gate.kind}"
    if key in TABLES[language]:
        return text("refusal", language, looks_like=text(key, language))
    return text("refusal_unknown", language)


def gate_details(gate: GateResult, language: str) -> str:
    """For a refusal: which of the gate's scores were above their usual range, and the rule's total."""
    if gate.rule is None:
        return ""
    scores = [text("gate_score", language, name=text(f"gate_score_{name}", language), value=value,
                   base=gate.rule.bases[name])
              for name, value in gate.scores.items() if value > gate.rule.bases[name]]
    return text("gate_details", language, scores="; ".join(scores), evidence=gate.evidence, limit=gate.rule.limit)


def decode_error_message(error: ImageDecodeError | Unread, language: str) -> str:
    """Why an upload cannot be read, from the decoder's code (never its English sentence): a refusal just raised, or
    one an evaluation kept for a file of a zip."""
    values = dict(error.values)
    if error.code == "not_an_image":
        values["kind"] = text(f"non_image_{values['kind']}", language)
    return text(f"decode_{error.code}", language, **values)


def unknown_version_message(error: UnknownVersionError, language: str) -> str:
    """A version that cannot be served, and the ones that can (or that the list cannot be fetched)."""
    version = repr(error.version[:60])
    if error.available is None:
        return text("unknown_version_unlisted", language, version=version)
    available = ", ".join(error.available) or text("none_available", language)
    return text("unknown_version", language, version=version, available=available)


def details_markdown(prediction: Prediction, language: str) -> str:
    """The probability against the threshold, and the uncertain band when the model has one."""
    band = prediction.uncertain_band
    band_text = (text("details_band", language, low=100 * band[0], high=100 * band[1]) if band
                 else text("details_no_band", language))
    return text("details_prediction", language, percent=100 * prediction.pneumonia_probability,
                threshold=100 * prediction.threshold, band=band_text)


def prevalence_markdown(prediction: Prediction, prevalence: float, language: str) -> str:
    """The probability at the prevalence chosen, and two lines on why; or that this version cannot say."""
    if prediction.calibrated_prevalence is None:
        return text("prevalence_unavailable", language)
    return "\n\n".join([text("prevalence_result", language, prevalence=100 * prevalence,
                             percent=100 * prediction.probability_at(prevalence)),
                        text("prevalence_why", language, calibrated=100 * prediction.calibrated_prevalence)])


def example_caption(example: FoundExample, language: str) -> str:
    """A thumbnail's caption: the reference label and why the example was chosen."""
    return text("example_caption", language, label=class_name(example.example.label, language),
                kind=text(f"example_{example.example.kind}", language))


def example_choice(example: FoundExample, language: str) -> str:
    """An example in the lab's picker: its population, reference label and why it was chosen."""
    return text("example_choice", language, population=text(f"population_{example.example.population}", language),
                caption=example_caption(example, language))


def reference_markdown(example: FoundExample | None, language: str) -> str:
    """An example's reference label and source; nothing for an upload."""
    if example is None:
        return ""
    return text("reference", language, label=class_name(example.example.label, language),
                source=text(f"source_{example.example.source}", language),
                kind=text(f"example_{example.example.kind}", language))


def model_markdown(info: Mapping, language: str) -> str:
    """The model panel: where the model came from, its version, its gate and its test metrics per source."""
    repo = info["repo_id"]
    lines = [text("panel_repository", language, repo=repo)]
    if info["source"] == "hub":
        commit = info["commit"] or ""
        lines += [text("panel_revision", language, revision=info["revision"], commit=commit[:12]),
                  text("panel_card", language, repo=repo, commit=commit)]
    else:
        reason = text(f"fallback_{info.get('fallback_code') or 'unreachable'}", language)
        lines.append(text("panel_bundled", language, reason=reason))
    lines.append(text("panel_version", language, version=info["version"] or text("untagged", language),
                      architecture=info["architecture"], size=info["image_size"], threshold=info["threshold"]))
    lines.append(text("panel_gate_on" if info["input_gate"] else "panel_gate_off", language))
    rows = [text("panel_test_row", language, source=source_name(source, language), **metrics)
            for source, metrics in info.get("test_by_source", {}).items()
            if all(metrics.get(key) is not None for key in ("n", "accuracy", "auc", "sensitivity", "specificity"))]
    if rows:
        lines.append("\n".join([text("panel_tests", language), *rows]))
    return "\n\n".join(lines)


def source_name(source: str, language: str) -> str:
    """A data set in words; one the tables do not know (a test model's, say) by its own identifier."""
    key = f"source_name_{source}"
    return text(key, language) if key in TABLES[language] else source


def student_note(info: Mapping) -> dict[str, object]:
    """The values the note for students is filled with: the grid Grad-CAM's map really comes from."""
    return {"grid": info["gradcam_grid"], "max_rho": RANDOMISATION_MAX_RHO}


def method_caption(method: str, view: MethodView, check: RandomisationCheck | None, language: str,
                   pending: bool = True) -> str:
    """A map's complete caption: method, time, the box scores (when known) and the sanity check (when done, or
    that it is running when `pending`)."""
    scores = view.box_scores
    boxes = ""
    if scores and scores["box_mass_share"] is None:
        boxes = text("caption_box_empty", language)
    elif scores:
        boxes = text("caption_box", language, where=text("inside" if scores["box_hit"] else "outside", language),
                     share=100 * scores["box_mass_share"])
    if check is not None:
        sanity = text("caption_sanity", language, rho=check.rho,
                      verdict=text("passes" if check.passed else "fails", language))
    else:
        sanity = text("caption_sanity_pending", language) if pending else ""
    return text("caption", language, method=method, ms=1000 * view.timed.seconds, boxes=boxes, sanity=sanity)


def comparison_markdown(comparison: Comparison, language: str) -> str:
    """What the lab explains, how long all the maps took, and which methods give the same map."""
    views = list(comparison.views.items())
    total = sum(view.timed.seconds for _, view in views)
    paragraphs = [text("lab_intro", language, label=class_name(comparison.analysis.prediction.label, language),
                       count=len(views), ms=1000 * total)]
    for index, (method, view) in enumerate(views):
        same = [other for other, later in views[index + 1:]
                if np.allclose(view.timed.heatmap, later.timed.heatmap, atol=1e-3)]
        if same:
            paragraphs.append(text("lab_same_maps", language, first=method, others=text("and", language).join(same)))
    return "\n\n".join(paragraphs)


def sanity_markdown(checks: LabChecks, language: str) -> str:
    """The randomisation check's table: Spearman rho and verdict per method, with the rule."""
    rows = [text("sanity_row", language, method=method, rho=check.rho,
                 verdict=text("passed" if check.passed else "failed", language))
            for method, check in checks.randomisation.items()]
    return "\n".join([text("sanity_title", language, layers=", ".join(checks.randomised_layers),
                           limit=RANDOMISATION_MAX_RHO), "", text("sanity_header", language), *rows])


def curves_plot(checks: LabChecks, language: str) -> Figure:
    """The deletion and insertion curves of every method."""
    texts = {name: text(f"curve_{name}", language) for name in ("deletion", "insertion", "share")}
    texts["probability"] = TABLES[language]["curve_probability"]  # filled in with the label by the figure
    return curves_figure(checks.curves, class_name(checks.label, language), texts)


def faithfulness_markdown(checks: LabChecks, language: str) -> str:
    """Areas under the deletion and insertion curves per method, and the blurred copy's floor."""
    rows = [text("faithfulness_row", language, method=method, deletion=curve.deletion_auc,
                 insertion=curve.insertion_auc)
            for method, curve in checks.curves.items()]
    blurred = next(iter(checks.curves.values())).deletion[-1]
    label = class_name(checks.label, language)
    return "\n".join([text("faithfulness_title", language, label=label), "", text("faithfulness_header", language),
                      *rows, "", text("faithfulness_baseline", language, blurred=blurred, label=label)])
