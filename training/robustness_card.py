"""The model card's sections on robustness to acquisition, the stated prevalence, the UNCERTAIN answer and the
stand-in hospitals, each with the previous version beside this one where it was measured."""

from __future__ import annotations

from cxr_pneumonia.acquisition import CHANGES, HELD_OUT_CHANGES

PREVALENCE_SENTENCE = ("The probability is calibrated for a 50 % prevalence: within each source the two classes "
                       "weigh the same, and the sources weigh the same. Where pneumonia is rarer (screening) or "
                       "commoner, the same X-ray has another probability: Bayes' rule on the odds moves it, as the "
                       "app's pre-test probability control does.")


def _pair(before: dict | None, after: dict, key: str, percent: bool = False) -> str:
    def text(value: float) -> str:
        return f"{value:.0%}" if percent else f"{value:.3f}"

    return text(after[key]) if before is None else f"{text(before[key])} / {text(after[key])}"


def _rows_by_key(result: dict | None) -> dict[tuple, dict]:
    return {} if not result else {(r["change"], r["severity"], r["source"]): r for r in result["rows"]}


def robustness_section(metrics: dict, source_label) -> str:
    """Per test source, every change at every severity: this version and the previous one."""
    current = metrics.get("robustness_test")
    if not current:
        return ""
    previous = metrics.get("previous_version", {}).get("robustness_test")
    version = metrics.get("previous_version", {}).get("version") or "previous"
    before, after = _rows_by_key(previous), _rows_by_key(current)
    heading = f"{version} / this version" if previous else "this version"
    lines = ["## Robustness to another site's look (the robustness suite, test splits)", "",
             "Each test X-ray changed before preprocessing, as a file from another site, device or phone would "
             "arrive (`python -m training.robustness`, seeded; cxr_pneumonia.acquisition defines each change). "
             f"Kept out of training: {', '.join(HELD_OUT_CHANGES).replace('_', ' ')}, and severity 3 of every "
             "change. Metrics count every image, refused or not, at the shipped threshold; *refused* is the "
             f"input gate's share. Each cell: {heading}.", ""]
    sources = list(dict.fromkeys(key[2] for key in after))
    for source in sources:
        lines += [f"### {source_label(source)}", "",
                  "| change | severity | AUC | sensitivity | specificity | balanced ECE | refused |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for change in ["none", *CHANGES]:
            for severity in ((0,) if change == "none" else (1, 2, 3)):
                row = after.get((change, severity, source))
                if row is None:
                    continue
                old = before.get((change, severity, source))
                name = change.replace("_", " ") + (" (not trained on)" if change in HELD_OUT_CHANGES else "")
                lines.append(f"| {name} | {severity} | {_pair(old, row, 'auc')} | {_pair(old, row, 'sensitivity')} "
                             f"| {_pair(old, row, 'specificity')} | {_pair(old, row, 'balanced_ece')} "
                             f"| {_pair(old, row, 'refused', percent=True)} |")
        lines.append("")
    return "\n".join(lines)


def calibration_section(metrics: dict, source_label) -> str:
    """ECE at each test source's own prevalence and balanced (each class to half), with the interval."""
    by_source = metrics.get("test_by_source", {})
    if not by_source or "balanced_ece" not in next(iter(by_source.values())):
        return ""
    previous = metrics.get("previous_version", {})
    lines = ["## Calibration at a stated prevalence", "", PREVALENCE_SENTENCE, "",
             "| test split | model | pneumonia share | ECE at that share | balanced ECE (95 % bootstrap interval) |",
             "|---|---|---:|---:|---|"]
    for name, test in by_source.items():
        old = previous.get("test_by_source", {}).get(name)
        for label, report in ((previous.get("version") or "previous", old), ("this version", test)):
            if report and "balanced_ece" in report:
                low, high = report["ci95"]["balanced_ece"]
                lines.append(f"| {source_label(name)} | {label} | {report['n_pneumonia'] / report['n']:.0%} "
                             f"| {report['ece']:.3f} | {report['balanced_ece']:.3f} ({low:.3f}-{high:.3f}) |")
    return "\n".join(lines)


def answers_section(config: dict, metrics: dict, source_label) -> str:
    """The UNCERTAIN band: its rule, the share it holds and the accuracy of the other answers per test source."""
    band = config.get("uncertain_band")
    if not band:
        return ""
    lines = ["## Three answers: PNEUMONIA, NORMAL or UNCERTAIN", "",
             f"Between {band['low']:.3f} and {band['high']:.3f} (probability at a 50 % prevalence) the answer is "
             "UNCERTAIN: the model cannot tell, and a clinician must read the X-ray. Rule, on pooled validation: "
             f"{band['rule']}.", "",
             "| test split | UNCERTAIN | accuracy of the other answers (95 % interval) | accuracy of all answers |",
             "|---|---:|---|---:|"]
    for name, test in metrics.get("test_by_source", {}).items():
        low, high = test["ci95_accuracy_outside_band"]
        lines.append(f"| {source_label(name)} | {test['uncertain_share']:.1%} ({test['n_uncertain']}) "
                     f"| {test['accuracy_outside_band']:.3f} ({low:.3f}-{high:.3f}) | {test['accuracy']:.3f} |")
    lines += ["", "![Risk and coverage](risk_coverage.png)", "",
              "The risk-coverage curve: the error rate of the answers kept when only the most confident share of "
              "each test split is answered; the dot is the shipped band."]
    return "\n".join(lines)


def stand_in_section(metrics: dict) -> str:
    """The leave-one-source-out table and the rule that chose the shipped run."""
    stand_ins = metrics.get("leave_one_source_out")
    if not stand_ins:
        return ""
    return "\n".join(["## Hospitals never seen: leave one source out", "",
                      "Each recipe trained on one source only, calibrated and thresholded on that source's "
                      "validation images, then measured on the other source's validation images, which it never "
                      "saw (`python -m training.loso`):", "", stand_ins["table"], "",
                      f"How the shipped run was chosen: {stand_ins['choice']}"])
