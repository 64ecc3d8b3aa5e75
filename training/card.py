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
from training.augment import PRESET_DESCRIPTIONS
from training.framing_check import DEFAULT_CROPS

TEMPLATE = Path(__file__).with_name("model_card_template.md")
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
            f"| {facts['parameters']:,} | {facts['mflops']:.0f} | {run['epochs_run']} | {run['train_seconds'] / 60:.1f} min "
            f"| {run['best_val_auc']:.4f} | {'n/a' if cropped is None else format(cropped['normal_called_pneumonia'], '.3f')} "
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
    """The input gate: what it computes and how often it refused the test split."""
    gate = config.get("gate")
    if not gate:
        return ""
    refused = test.get("rejected_fraction")
    refused_text = f" It refused {refused:.1%} of the {test['n']} official test images." if refused is not None else ""
    return (
        "## Input gate\n\nImages that do not look like a chest X-ray are refused instead of answered.\n\n"
        f"- Method: {gate['method']}.\n- Thresholds: {gate['threshold_rule']}.\n"
        f"- Built from chest X-rays only; photos, MRI, CT and other images were never used to fit it.{refused_text}"
    )


def attention_section(metrics: dict) -> str:
    """Where Grad-CAM lands on test images (training/attention.py)."""
    attention = metrics.get("attention")
    if not attention:
        return ""
    return (
        "## Where the heatmaps land\n\n"
        f"Grad-CAM of the predicted class on {attention['n']} test images (seeded sample): on average "
        f"{attention['mean_heat_share_in_lung_box']:.0%} of the heat lies in the central lung-field box "
        f"({attention['lung_box_area_share']:.0%} of the image), {attention['mean_heat_share_on_border']:.0%} on the "
        f"outer 8 % frame where markers and borders sit ({attention['border_area_share']:.0%} of the image), and "
        f"{attention['share_of_images_with_peak_on_border']:.0%} of the maps peak on that frame. The box is a coarse "
        "proxy for the lungs, not a segmentation.\n\n![Grad-CAM examples](gradcam_examples.png)"
    )


def render_card(directory: Path, compare: list[Path] | None = None, augmentation: list[Path] | None = None,
                choice: str = DEFAULT_CHOICE) -> str:
    """The card text for the model in `directory`, optionally with a comparison table."""
    facts = model_facts(directory)
    config, metrics = facts["config"], facts["metrics"]
    test, run = metrics["test"], metrics["training"]
    (tn, fp), (fn, tp) = test["confusion_matrix"]["rows_true_cols_predicted"]
    values = {
        "model_name": f"cxr-pneumonia-{config['architecture']}",
        "architecture": config["architecture"],
        "parameters": f"{facts['parameters']:,}",
        "mflops": f"{facts['mflops']:.0f}",
        "image_size": config["image_size"],
        "threshold": f"{config['threshold']:.3f}",
        "threshold_rule": config["threshold_rule"],
        "temperature": f"{config['temperature']:.3f}",
        "preprocessing": config["preprocessing"],
        "manifest_sha": config["data_manifest_sha256"],
        "code_version": config["code_version"],
        "test_n": test["n"],
        "cm_tn": tn, "cm_fp": fp, "cm_fn": fn, "cm_tp": tp,
        "comparison": comparison_section([facts, *(model_facts(path) for path in compare)]) if compare else "",
        "augmentation": (augmentation_section([facts, *(model_facts(path) for path in augmentation)], choice)
                         if augmentation else ""),
        "framing": framing_section(metrics),
        "gate": gate_section(config, test),
        "attention": attention_section(metrics),
        "n_train": run["n_train"],
        "n_validation": run["n_validation"],
        "n_validation_patients": run["n_validation_patients"],
        "augment": run["augment"],
        "seed": run["seed"],
        "epochs_run": run["epochs_run"],
        "train_minutes": f"{run['train_seconds'] / 60:.1f}",
    }
    for key in ("accuracy", "auc", "sensitivity", "specificity", "precision", "f1", "ece"):
        values[f"test_{key}"] = f"{test[key]:.4f}"
    for key in ("accuracy", "auc", "sensitivity", "specificity", "precision"):
        values[f"ci_{key}"] = _interval(test["ci95"][key])
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
