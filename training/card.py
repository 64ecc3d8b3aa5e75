"""The model card (README.md of a model directory), rendered from its measured numbers.

    python -m training.card --model model --compare runs/seed_baseline
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from string import Template

import keras

from cxr_pneumonia.architectures import count_flops
from cxr_pneumonia.config import (
    CARD_FILENAME,
    CONFIG_FILENAME,
    METRICS_FILENAME,
    MODEL_FILENAME,
)
from cxr_pneumonia.sources import SOURCES
from training.augment import PRESET_DESCRIPTIONS
from training.framing_check import DEFAULT_CROPS
from training.gate import category_table
from training.robustness_card import answers_section, calibration_section, robustness_section, stand_in_section

TEMPLATE = Path(__file__).with_name("model_card_template.md")
LOCALIZATION_ANCHORS = ("Anchors: CheXlocalize (Saporta et al. 2022) Grad-CAM hit rate 0.50 for airspace opacity and "
                        "0.74 for consolidation (DenseNet-121 ensembles, radiologist segmentations); Wang et al. 2017 "
                        "(ChestX-ray8) pneumonia localisation accuracy 0.75 at IoBB 0.1.")
CHANGES_FROM_PREVIOUS = (
    "v1.1.0 was trained on the pediatric set alone. On adults it ranked well but its threshold and "
    "calibration did not travel: it called most normal adults pneumonia. This version is trained on children "
    "and adults with batches balanced across sources and classes, one threshold and one calibration fitted with "
    "every source weighted equally, and the preprocessing, augmentation and input size measured on both sources' "
    "validation splits. Both models, measured on the same test splits:"
)
STRESS_CROP = DEFAULT_CROPS[-1]  # the framing check's tightest crop, shown in the run tables
DEFAULT_CHOICE = ("The shipped run is the one with the higher validation AUC, a rule fixed before the second run "
                  "was trained.")


def _interval(values: list[float]) -> str:
    return f"{values[0]:.3f}-{values[1]:.3f}"


def model_facts(directory: Path) -> dict:
    """Architecture, size and cost of the model in `directory`, with its metrics."""
    model = keras.saving.load_model(directory / MODEL_FILENAME, compile=False, safe_mode=True)
    config = json.loads((directory / CONFIG_FILENAME).read_text())
    metrics = json.loads((directory / METRICS_FILENAME).read_text())
    return {
        "architecture": config["architecture"],
        "image_size": config["image_size"],
        "parameters": model.count_params(),
        "mflops": count_flops(model) / 1e6,
        "config": config,
        "metrics": metrics,
    }


def runs_table(models: list[dict]) -> list[str]:
    """Markdown rows of models trained with the same pipeline, evaluated on the same test split."""
    lines = [
        "| architecture | augmentation | input | parameters | MFLOPs / image | epochs | training wall time "
        "| validation AUC | validation normals called pneumonia, 12.5 % cropped | test accuracy | test AUC "
        "| sensitivity | specificity |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for facts in models:
        test, run = facts["metrics"]["test"], facts["metrics"]["training"]
        cropped = framing_row(facts["metrics"], STRESS_CROP)
        lines.append(
            f"| {facts['architecture']} | {run['augment']} | {facts['image_size']}x{facts['image_size']} "
            f"| {facts['parameters']:,} | {facts['mflops']:.0f} | {run['epochs_run']} "
            f"| {run['train_seconds'] / 60:.1f} min | {run['best_val_auc']:.4f} "
            f"| {'n/a' if cropped is None else format(cropped['normal_called_pneumonia'], '.3f')} "
            f"| {test['accuracy']:.3f} | {test['auc']:.3f} | {test['sensitivity']:.3f} | {test['specificity']:.3f} |"
        )
    return lines


def framing_row(metrics: dict, crop: float) -> dict | None:
    """The framing check's row for `crop` in a metrics.json, if it was measured."""
    return next((row for row in metrics.get("framing_check", []) if row["crop_top_and_bottom"] == crop), None)


def comparison_section(models: list[dict]) -> str:
    """Our CNN against the seed baseline: same pipeline, same budget, same test."""
    budget = models[0]["metrics"]["training"]
    return "\n".join([
        "## Our CNN against the seed baseline (same pipeline, same budget, same test split)", "",
        *runs_table(models), "",
        f"Budget: at most {budget['max_epochs']} epochs and {budget['time_budget_minutes']:g} minutes of training "
        "each (checked at the end of each epoch, so the last epoch may run over), early stopping on validation "
        "AUC, same seed, augmentation, patient-grouped split, calibration and threshold rule, on the same "
        "2-core CPU (shared with other work, so wall times are indicative).",
    ])


def augmentation_section(models: list[dict], choice: str) -> str:
    """Augmentation presets compared on validation, with the rule that chose the shipped one."""
    presets = dict.fromkeys(facts["metrics"]["training"]["augment"] for facts in models)
    described = "; ".join(f"`{name}`: {PRESET_DESCRIPTIONS[name]}" for name in presets)
    return "\n".join([
        "## Augmentation, chosen on validation", "",
        *runs_table(models), "",
        f"{choice} {described}.",
    ])


def framing_section(metrics: dict) -> str:
    """The framing check on the validation split (training/framing_check.py)."""
    rows = metrics.get("framing_check")
    if not rows:
        return ""
    lines = ["## Framing check (a shortcut test on validation)", "",
             "Most training pneumonia images are tight crops of the lungs, while normals show shoulders and "
             "abdomen, so a model can learn the framing instead of the lungs. Cutting the same share of the "
             "height off the top and the bottom of each validation image:", "",
             "| cropped top and bottom | normals called pneumonia | sensitivity |", "|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['crop_top_and_bottom']:.1%} | {row['normal_called_pneumonia']:.3f} "
                     f"(of {row['n_normal']}) | {row['sensitivity']:.3f} (of {row['n_pneumonia']}) |")
    return "\n".join(lines)


def gate_section(config: dict, test: dict) -> str:
    """The input gate: what it computes, how often it refused the test split and, with a classifier, how often it
    refused each category of other radiographs, fitted with and without that category."""
    gate = config.get("gate")
    if not gate:
        return ""
    refused = test.get("rejected_fraction")
    refused_text = f" It refused {refused:.1%} of the {test['n']} official test images." if refused is not None else ""
    section = (
        "## Input gate\n\nImages that are not frontal chest X-rays are refused instead of answered.\n\n"
        f"- Method: {gate['method']}.\n- Verdict: {gate['threshold_rule']}.\n"
    )
    if not gate.get("negatives"):
        return section + ("- Built from chest X-rays only; photos, MRI, CT and other images were never used to fit "
                          f"it.{refused_text}")
    return section + (
        f"- The classifier's negatives: {gate['classifier']['trained_on']}. Photos, MRI and CT were never used to "
        f"fit it, and no image that is not a chest X-ray sets the verdict rule.{refused_text}\n\n"
        f"Radiographs of {gate['negatives']['folder']} refused, per category. The gate was fitted on them, so the "
        "last column, from fitting again without each category in turn, is the estimate for kinds of radiograph it "
        "has never seen:\n\n" + category_table(gate)
    )


def source_label(name: str) -> str:
    """How a data source's test split is named in the card (the folder name for one it does not know)."""
    return SOURCES[name].test_split if name in SOURCES else name


def source_people(name: str) -> str:
    """Who is in a data source, for the card (the folder name for one it does not know)."""
    return SOURCES[name].people if name in SOURCES else name


def model_index(model_name: str, metrics: dict) -> str:
    """The card's model-index front matter: one result per source's test split."""
    lines = ["model-index:", f"- name: {model_name}", "  results:"]
    by_source = metrics.get("test_by_source", {})
    first = next(iter(by_source), "test")
    # The headline result is metrics["test"] (the first source's, which push and versions compare across versions).
    for name, test in {first: metrics["test"], **{k: v for k, v in by_source.items() if k != first}}.items():
        lines += ["  - task:", "      type: image-classification", "      name: Pneumonia vs normal (chest X-ray)",
                  "    dataset:", f"      type: {name}", f"      name: {source_label(name)}", "      split: test",
                  "    metrics:"]
        for kind, key, label in (("accuracy", "accuracy", None), ("roc_auc", "auc", None),
                                 ("recall", "sensitivity", "sensitivity"), ("specificity", "specificity", None),
                                 ("precision", "precision", None), ("f1", "f1", None)):
            lines.append(f"    - type: {kind}")
            if label:
                lines.append(f"      name: {label}")
            lines.append(f"      value: {test[key]:.4f}")
    return "\n".join(lines)


def source_table(name: str, test: dict) -> str:
    """The test metrics of one source, with 95 % intervals and the confusion matrix."""
    (tn, fp), (fn, tp) = test["confusion_matrix"]["rows_true_cols_predicted"]
    rows = [f"### {source_label(name)} ({test['n']} images: {test['n_pneumonia']} pneumonia, "
            f"{test['n_normal']} normal)",
            "", "| metric | value | 95 % interval |", "|---|---:|---|"]
    for key, label in (("accuracy", "accuracy"), ("auc", "ROC AUC"),
                       ("sensitivity", "sensitivity (recall for pneumonia)"),
                       ("specificity", "specificity"), ("precision", "precision")):
        rows.append(f"| {label} | {test[key]:.4f} | {_interval(test['ci95'][key])} |")
    rows += [f"| F1 | {test['f1']:.4f} | |", f"| expected calibration error | {test['ece']:.4f} | |", "",
             f"Confusion matrix (rows true, columns predicted): NORMAL {tn} / {fp}, PNEUMONIA {fn} / {tp}."]
    return "\n".join(rows)


def source_tables(metrics: dict) -> str:
    """A table per source's test split."""
    by_source = metrics.get("test_by_source", {"test": metrics["test"]})
    return "\n\n".join(source_table(name, test) for name, test in by_source.items())


def changes_section(metrics: dict) -> str:
    """What changed from the previous version, both measured on the same test splits."""
    previous = metrics.get("previous_version")
    if not previous:
        return ""
    version = previous.get("version") or "previous"
    lines = [f"## What changed from {version} and why", "", previous.get("what_changed", CHANGES_FROM_PREVIOUS), "",
             "| test split | model | AUC | sensitivity | specificity | accuracy | ECE |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for name, test in metrics["test_by_source"].items():
        for label, report in ((version, previous["test_by_source"].get(name)), ("this version", test)):
            if report:
                lines.append(f"| {source_label(name)} | {label} | {report['auc']:.3f} | {report['sensitivity']:.3f} "
                             f"| {report['specificity']:.3f} | {report['accuracy']:.3f} | {report['ece']:.3f} |")
    before, after = previous.get("localization"), metrics.get("localization")
    if before and after:
        lines += ["", f"Grad-CAM pointing-game hit rate on the RSNA test pneumonias: {version} "
                      f"{before['methods']['Grad-CAM']['hit_rate']:.3f}, this version "
                      f"{after['methods']['Grad-CAM']['hit_rate']:.3f}."]
    return "\n".join(lines)


def contrast_section(metrics: dict) -> str:
    """The contrast check on validation (training/contrast_check.py)."""
    rows = metrics.get("contrast_check")
    if not rows:
        return ""
    lines = ["## Contrast check (does the look of a hospital's images move the answer?)", "",
             "The RSNA copies were histogram-equalised by whoever published them; other hospitals' X-rays are not. "
             "Each validation image changed before preprocessing, against the unchanged image:", "",
             "| source | change | mean change of probability | decisions flipped | AUC before | AUC after |",
             "|---|---|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['source']} | {row['change']} | {row['mean_abs_probability_change']:.3f} "
                     f"| {row['decisions_flipped']:.3f} | {row['auc_before']:.3f} | {row['auc_after']:.3f} |")
    return "\n".join(lines)


def localization_section(metrics: dict) -> str:
    """Where the heatmaps land against the radiologists' boxes (training/localization.py)."""
    report = metrics["localization"]
    lines = ["## Where the heatmaps land (radiologists' boxes)", "",
             f"Each method's map of the evidence for PNEUMONIA on the {report['n']} pneumonia images of the "
             f"{report['data']} {report['split']} split, against the radiologists' opacity boxes "
             f"(Grad-CAM layer `{report['gradcam_layer']}`). Hit rate: the map's peak inside a box (pointing game). "
             "Mass ratio: the map's share inside the boxes over the boxes' share of the image (1 = no better than "
             "uniform). mIoU: the map thresholded with Otsu's method against the boxes (as CheXlocalize does).", "",
             "| method | hit rate | mass ratio | mIoU (Otsu) |", "|---|---:|---:|---:|"]
    for name, row in report["methods"].items():
        lines.append(f"| {name} | {row['hit_rate']:.3f} | {row['mass_ratio']:.2f} | {row['miou_otsu']:.3f} |")
    return "\n".join([*lines, "", LOCALIZATION_ANCHORS])


def heatmaps_section(metrics: dict) -> str:
    """Where the heatmaps land against the radiologists' boxes; for an older model measured only against a central
    lung-field box (v1's proxy, whose code is gone), a plain sentence saying so."""
    if "localization" in metrics:
        return localization_section(metrics)
    if "attention" in metrics:
        return ("## Where the heatmaps land\n\nThis version's heatmaps were not measured against the radiologists' "
                "boxes, only against a central lung-field box, a coarse proxy for the lungs that this card no longer "
                "shows.")
    return ""


def invariance_section(metrics: dict) -> str:
    """How much each change of acquisition still reaches the model input, the previous preprocessing beside this
    one (training/invariance_check.py), with no model."""
    check = metrics.get("invariance_check")
    if not check:
        return ""
    names = list(check["tables"])
    lines = ["## How much of another site's look reaches the network (the invariance check)", "",
             f"On {check['n_images']} validation images, each change of the robustness suite at severity "
             f"{check['severity']:g}: the mean absolute difference it makes to the model input (0 to 1), with each "
             "preprocessing (`python -m training.invariance_check`, no model). Rotation and crop move the anatomy "
             "itself, which no preprocessing undoes.", "",
             "| change | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for change in check["tables"][names[0]]:
        lines.append(f"| {change.replace('_', ' ')} | "
                     + " | ".join(f"{check['tables'][name][change]:.4f}" for name in names) + " |")
    return "\n".join(lines)


def explanations_section(metrics: dict) -> str:
    """Explanation quality per method (training/explanations.py) of this version and, when measured, the previous
    one."""
    own = explanations_table(metrics.get("explanations"), "this version")
    previous = metrics.get("previous_version", {})
    if not own:
        return ""
    earlier = explanations_table(previous.get("explanations"), previous.get("version") or "previous")
    return "\n\n".join(part for part in (own, earlier) if part)


def explanations_table(report: dict | None, whose: str) -> str:
    """Localisation against the RSNA boxes, the randomisation check and the deletion and insertion areas on each
    test split's sample, with the anchors."""
    if not report:
        return ""
    splits, localization = report["splits"], report["localization"]
    names = " / ".join(SOURCES[name].short_name if name in SOURCES else name for name in splits)
    heading = ("## How far to trust the heatmaps (explanation quality per method)" if whose == "this version"
               else f"### The same measures of {whose}")
    lines = [heading, "",
             f"Hit rate and mIoU: the map of the evidence for PNEUMONIA on the {localization['n']} RSNA test "
             "pneumonias against the radiologists' boxes (peak inside a box; IoU of the Otsu-thresholded map). "
             f"The rest on a seeded sample of {report['sample_per_split']} images of each test split ({names}), "
             "explaining the model's decision. Sanity check (Adebayo et al. 2018): a method "
             f"{report['randomisation']['rule']} (here `{', '.join(report['randomisation']['check_layers'])}`). "
             "Deletion and insertion (Petsiuk et al. 2018): areas under the "
             "curves of the decided class's probability as the most salient pixels are replaced by "
             f"{report['perturbation']['baseline']} (deletion: lower is better) or restored into it (insertion: "
             "higher is better).", "",
             f"| method | hit rate | mIoU (Otsu) | randomisation mean abs rho ({names}) | sanity check ({names}) "
             f"| deletion AUC ({names}) | insertion AUC ({names}) |", "|---|---:|---:|---:|---|---:|---:|"]
    for method, located in localization["methods"].items():
        rows = [split["methods"][method] for split in splits.values() if method in split["methods"]]

        def per_split(key: str, spec: str, rows: list[dict] = rows) -> str:
            return " / ".join(format(row[key], spec) for row in rows)

        verdicts = " / ".join("passed" if row["randomisation_passed"] else "**failed**" for row in rows)
        checks = (f"{per_split('randomisation_abs_rho', '.2f')} | {verdicts} | {per_split('deletion_auc', '.3f')} "
                  f"| {per_split('insertion_auc', '.3f')}") if rows else " | | | "
        lines.append(f"| {method} | {located['hit_rate']:.3f} | {located['miou_otsu']:.3f} | {checks} |")
    return "\n".join([*lines, "", LOCALIZATION_ANCHORS])


def box_supervision_text(weight: float) -> str:
    """The training bullet on box supervision."""
    if not weight:
        return "No box supervision: the heatmap layer was trained through the image label alone."
    return (f"Box supervision (weight {weight:g}, training/box_supervision.py): each cell of the map Grad-CAM explains "
            "is also trained to say whether it lies in a radiologist's box, where that is known: the RSNA pneumonias "
            "(their boxes) and every normal image (no box anywhere), as in Li et al. 2018. Children's pneumonias "
            "train through the image label alone.")


def label_smoothing_text(smoothing: float) -> str:
    """The training bullet's words on label smoothing."""
    if not smoothing:
        return "no label smoothing"
    return (f"labels smoothed by {smoothing:g} (a pneumonia trains towards {1 - smoothing / 2:g}, a normal image "
            f"towards {smoothing / 2:g})")


def render_card(directory: Path, compare: list[Path] | None = None, augmentation: list[Path] | None = None,
                choice: str = DEFAULT_CHOICE) -> str:
    """The card text for the model in `directory`, optionally with a comparison table."""
    facts = model_facts(directory)
    config, metrics = facts["config"], facts["metrics"]
    test, run = metrics["test"], metrics["training"]
    model_name = f"cxr-pneumonia-{config['architecture']}"
    sources = list(metrics.get("test_by_source", {}))
    manifest = config["data_manifest_sha256"]
    values = {
        "model_name": model_name,
        "model_index": model_index(model_name, metrics),
        "sources_text": " and ".join(map(source_people, sources)) or "children",
        "training_data": "; ".join(map(source_people, sources)) or "Kermany train split",
        "source_tables": source_tables(metrics),
        "changes": changes_section(metrics),
        "contrast": "\n\n".join(part for part in (invariance_section(metrics), contrast_section(metrics)) if part),
        "calibration": calibration_section(metrics, source_label),
        "answers": answers_section(config, metrics, source_label),
        "robustness": robustness_section(metrics, source_label),
        "stand_ins": stand_in_section(metrics),
        "temperature_rule": config.get("temperature_rule", "temperature scaling on validation"),
        "architecture": config["architecture"],
        "parameters": f"{facts['parameters']:,}",
        "mflops": f"{facts['mflops']:.0f}",
        "image_size": config["image_size"],
        "threshold": f"{config['threshold']:.3f}",
        "threshold_rule": config["threshold_rule"],
        "threshold_note": config.get("threshold_note", ""),
        "box_supervision": box_supervision_text(run.get("box_weight", 0.0)),
        "label_smoothing": label_smoothing_text(run.get("label_smoothing", 0.0)),
        "temperature": f"{config['temperature']:.3f}",
        "logit_offset": f"{config.get('logit_offset', 0.0):.3f}",
        "preprocessing": config["preprocessing"],
        "manifest_sha": ", ".join(f"{k} `{v}`" for k, v in manifest.items()) if isinstance(manifest, dict)
                        else f"`{manifest}`",
        "code_version": config["code_version"],
        "comparison": comparison_section([facts, *(model_facts(path) for path in compare)]) if compare else "",
        "augmentation": (augmentation_section([facts, *(model_facts(path) for path in augmentation)], choice)
                         if augmentation else ""),
        "framing": framing_section(metrics),
        "gate": gate_section(config, test),
        "heatmaps": heatmaps_section(metrics),
        "explanations": explanations_section(metrics),
        "n_train": run["n_train"],
        "n_validation": run["n_validation"],
        "n_validation_patients": run["n_validation_patients"],
        "augment": run["augment"],
        "seed": run["seed"],
        "epochs_run": run["epochs_run"],
        "train_minutes": f"{run['train_seconds'] / 60:.1f}",
    }
    return Template(TEMPLATE.read_text()).substitute(values)


def write_card(directory: Path, compare: list[Path] | None = None, augmentation: list[Path] | None = None,
               choice: str = DEFAULT_CHOICE) -> Path:
    """Write README.md (the Hub model card) into the model directory."""
    path = directory / CARD_FILENAME
    path.write_text(render_card(directory, compare, augmentation, choice))
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--compare", type=Path, nargs="*", default=[], help="other architectures, same budget")
    parser.add_argument("--augmentation", type=Path, nargs="*", default=[], help="same model, other augmentation")
    parser.add_argument("--choice", default=DEFAULT_CHOICE, help="how the shipped run was chosen among --augmentation")
    args = parser.parse_args(argv)
    print(write_card(args.model, args.compare, args.augmentation, args.choice))


if __name__ == "__main__":
    main()
