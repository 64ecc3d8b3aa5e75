"""Turn a training run into a publishable model directory: calibration, metrics, plots, card.

    python -m training.report --model runs/cxr_cnn --data ../shared/data/chest_xray ../shared/data/rsna_pneumonia
    python -m training.report --model model --data ../shared/data/chest_xray ../shared/data/rsna_pneumonia \
        --measure-only
    python -m training.report --model runs/cxr_cnn --data ../shared/data/chest_xray ../shared/data/rsna_pneumonia \
        --validation-only

--measure-only, after `python -m training.gate` refitted a model's gate: validation and test measured again
(the gate's refusals change; calibration, threshold and the other entries of metrics.json stay) and the card
rewritten.

--validation-only, to choose between training runs without reading a test split: calibration on validation,
then validation per source, the framing and contrast checks and Grad-CAM's localisation on validation, into the
run's config.json (no gate yet) and metrics.json. A later full report replaces both.

The first data source's test split is the headline `test` block of metrics.json (Kermany's official test,
comparable across versions); every source's test split is in `test_by_source`, all of them in `test_pooled`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import keras
import numpy as np

from cxr_pneumonia.acquisition import CHANGES
from cxr_pneumonia.config import (
    CONFIG_FILENAME,
    DEFAULT_DATA_DIR,
    LABELS,
    METRICS_FILENAME,
    MODEL_FILENAME,
)
from cxr_pneumonia.examples import BOXES_FILENAME
from cxr_pneumonia.explain import DEFAULT_METHOD
from cxr_pneumonia.imaging import read_image_file
from cxr_pneumonia.model import ModelConfig, PneumoniaModel, calibrated_probability, load_model_dir
from cxr_pneumonia.preprocessing import DEFAULT_NORMALIZATION, describe
from training import plots
from training.calibration import (
    BAND_RULE,
    CALIBRATED_PREVALENCE,
    TEMPERATURE_RULE,
    THRESHOLD_RULE,
    calibrate,
    uncertain_band,
)
from training.card import write_card
from training.contrast_check import contrast_report
from training.data import (
    LabelledImages,
    concatenate,
    file_digest,
    patient_id,
    subset,
    test_images,
    validation_images,
)
from training.evaluate import POOLED, ScoredImages, evaluate_sources, format_report, score_images, source_reports
from training.framing_check import DEFAULT_CROPS, framing_report
from training.gate import fit_gate
from training.localization import localization_report
from training.robustness import changed_input
from training.run_files import HISTORY_FILENAME, RUN_FILENAME

LOCALIZATION_METHODS = ["Grad-CAM", "Grad-CAM++", "Layer-CAM"]
# The UNCERTAIN band is chosen on the validation images as they are and under these changes (see BAND_RULE).
BAND_CHANGES = tuple(name for name in CHANGES if name not in ("negative", "phone_photo"))
BAND_SEVERITY = 2


def code_version() -> str:
    """The git commit of this code, marked -dirty when the work tree has changes."""
    repo = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True)
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                                capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit.stdout.strip() + ("-dirty" if status.stdout.strip() else "")


def write_config(out: Path, run: dict, calibration: tuple[float, float], threshold: float,
                 data_dirs: list[Path], band: tuple[float, float]) -> ModelConfig:
    """config.json: everything the app needs to use the model as it was trained."""
    normalization = run.get("normalization", DEFAULT_NORMALIZATION)
    config = {
        "labels": list(LABELS),
        "image_size": run["image_size"],
        "normalization": normalization,
        "preprocessing": describe(normalization),
        **({"band_energies": run["band_energies"]} if run.get("band_energies") else {}),
        "threshold": threshold,
        "threshold_rule": THRESHOLD_RULE,
        "temperature": calibration[0],
        "logit_offset": calibration[1],
        "temperature_rule": TEMPERATURE_RULE,
        "calibrated_prevalence": CALIBRATED_PREVALENCE,
        "uncertain_band": {"low": band[0], "high": band[1], "rule": BAND_RULE},
        "gradcam_layer": run["gradcam_layer"],
        "architecture": run["arch"],
        "data_manifest_sha256": manifest_digests(data_dirs),
        "code_version": code_version(),
        "version": run.get("version"),
    }
    (out / CONFIG_FILENAME).write_text(json.dumps(config, indent=2))
    return ModelConfig.from_json(config)


def manifest_digests(data_dirs: list[Path]) -> dict[str, str | None]:
    """SHA-256 of each source's MANIFEST.csv, by source name."""
    return {d.resolve().name: file_digest(d / "MANIFEST.csv") if (d / "MANIFEST.csv").is_file() else None
            for d in data_dirs}


def calibrate_run(out: Path, data_dirs: list[Path]) -> tuple[dict, LabelledImages]:
    """Fit the temperature, offset, threshold and uncertain band on the validation images of the sources the run
    trained on and write config.json (no gate); returns run.json and those images."""
    run = json.loads((out / RUN_FILENAME).read_text())
    keras_model = keras.saving.load_model(out / MODEL_FILENAME, compile=False, safe_mode=True)
    normalization = run.get("normalization", DEFAULT_NORMALIZATION)
    uncalibrated = PneumoniaModel(keras_model, ModelConfig(image_size=run["image_size"], normalization=normalization,
                                                           band_energies=tuple(run.get("band_energies", ()))))
    validation = trained_sources_validation(out, run)
    val_logits = uncalibrated.logits(np.stack([uncalibrated.preprocess_file(p) for p in validation.paths]))
    temperature, offset, threshold = calibrate(val_logits, validation.labels, validation.sources)
    changed_logits = suite_logits(uncalibrated, validation)
    count = 1 + len(BAND_CHANGES)
    probabilities = calibrated_probability(np.concatenate([val_logits, changed_logits]), temperature, offset)
    band = uncertain_band(probabilities, np.tile(validation.labels, count), threshold, validation.sources * count)
    write_config(out, run, (temperature, offset), threshold, data_dirs, band)
    return run, validation


def suite_logits(model: PneumoniaModel, validation: LabelledImages) -> np.ndarray:
    """The validation images' logits under each of BAND_CHANGES at BAND_SEVERITY (the robustness suite's seeded
    draws), change after change, each in the images' order."""
    with ThreadPoolExecutor(2) as pool:
        grays = list(pool.map(read_image_file, validation.paths))
        logits = []
        for change in BAND_CHANGES:
            inputs = list(pool.map(lambda item, name=change: changed_input(model, item[1], name, BAND_SEVERITY,
                                                                           item[0]), enumerate(grays)))
            logits.append(model.logits(np.stack(inputs)))
    return np.concatenate(logits)


def trained_sources_validation(out: Path, run: dict) -> LabelledImages:
    """The run's validation images, without those of a source it held out of training (--holdout-source)."""
    validation = validation_images(out)
    held_out = run.get("holdout_source")
    return subset(validation, np.array(validation.sources) != held_out) if held_out else validation


def validation_checks(model: PneumoniaModel, run: dict, validation: ScoredImages) -> dict:
    """What is measured on validation besides the reports: the run, the framing and contrast checks (their
    unchanged images' probabilities are the scores already predicted)."""
    first = validation.of_source(validation.images.source_names[0])
    return {
        "training": {**run, "n_validation_patients": len({patient_id(p) for p in validation.images.paths})},
        "framing_check": framing_report(model, first.images, DEFAULT_CROPS, uncropped=first.probabilities),
        "contrast_check": contrast_report(model, validation.images, before=validation.probabilities),
    }


def sources_with_boxes(data_dirs: list[Path]) -> list[Path]:
    """The data sources that come with radiologists' boxes."""
    return [d for d in data_dirs if (d / BOXES_FILENAME).is_file()]


def write_report(out: Path, data_dirs: list[Path], previous: Path | None = None, what_changed: str = "",
                 keep_gate: bool = False, keep_calibration: bool = False) -> dict:
    """Calibrate on validation, fit the input gate (or keep the one already fitted), evaluate on val/test per
    source, write config, metrics, plots and card; `previous` is an earlier model directory measured on the same
    test splits beside it."""
    fitted_gate = json.loads((out / CONFIG_FILENAME).read_text()).get("gate") if keep_gate else None
    if keep_gate and not fitted_gate:
        raise ValueError(f"--keep-gate: {out} has no fitted gate; run python -m training.gate --model {out} first")
    if keep_calibration:  # calibrated by --validation-only, on the same validation images and rules
        run = json.loads((out / RUN_FILENAME).read_text())
        validation = trained_sources_validation(out, run)
    else:
        run, validation = calibrate_run(out, data_dirs)
    if fitted_gate:
        config = json.loads((out / CONFIG_FILENAME).read_text()) | {"gate": fitted_gate}
        (out / CONFIG_FILENAME).write_text(json.dumps(config, indent=2))
    else:
        fit_gate(out, data_dirs)
    model = load_model_dir(out)

    tests = concatenate([test_images(d) for d in data_dirs])
    scored_validation, scored_tests = score_images(model, validation), score_images(model, tests)
    metrics = measure(model, scored_validation, scored_tests) | validation_checks(model, run, scored_validation)
    with_boxes = sources_with_boxes(data_dirs)
    if with_boxes:
        metrics["localization"] = localization_report(model, with_boxes[0], test_images(with_boxes[0]), "test",
                                                      LOCALIZATION_METHODS)
    if previous:
        metrics["previous_version"] = previous_version_metrics(previous, tests, with_boxes[:1])
        if what_changed:
            metrics["previous_version"]["what_changed"] = what_changed
    (out / METRICS_FILENAME).write_text(json.dumps(metrics, indent=2))
    write_plots(out, model, scored_validation, scored_tests, metrics)
    write_card(out)
    for name, report in metrics["test_by_source"].items():
        print(f"test split of {name}\n" + format_report(report))
    return metrics


def validation_only_report(out: Path, data_dirs: list[Path]) -> dict:
    """Calibrate and measure a run on its validation images alone, test splits untouched, to choose between runs:
    config.json (without a gate) and a metrics.json of validation entries, localisation on validation."""
    run, validation = calibrate_run(out, data_dirs)
    model = load_model_dir(out)
    scored_validation = score_images(model, validation)
    metrics = validation_measures(model, scored_validation) | validation_checks(model, run, scored_validation)
    with_boxes = sources_with_boxes(data_dirs)
    if with_boxes:
        metrics["localization"] = localization_report(
            model, with_boxes[0], validation.of_source(with_boxes[0].resolve().name), "validation", [DEFAULT_METHOD])
    (out / METRICS_FILENAME).write_text(json.dumps(metrics, indent=2))
    for name, report in metrics["validation_by_source"].items():
        print(f"validation images of {name}\n" + format_report(report))
    return metrics


def refresh_measures(out: Path, data_dirs: list[Path]) -> dict:
    """Measure validation and test again into metrics.json, keeping its other entries, and rewrite the card: after
    the input gate was refitted (`python -m training.gate`), its refusals change and nothing else."""
    model = load_model_dir(out)
    metrics = json.loads((out / METRICS_FILENAME).read_text())
    tests = concatenate([test_images(d) for d in data_dirs])
    metrics |= measure(model, score_images(model, validation_images(out)), score_images(model, tests))
    (out / METRICS_FILENAME).write_text(json.dumps(metrics, indent=2))
    write_card(out)
    return metrics


def measure(model: PneumoniaModel, validation: ScoredImages, tests: ScoredImages) -> dict:
    """Validation and test reports, per source and pooled; `test` is the first source's."""
    test_reports = source_reports(model, tests)
    first = tests.images.source_names[0]
    return validation_measures(model, validation) | {
        "test": test_reports[first],
        "test_by_source": {k: v for k, v in test_reports.items() if k != POOLED},
        "test_pooled": test_reports.get(POOLED, test_reports[first]),
    }


def validation_measures(model: PneumoniaModel, validation: ScoredImages) -> dict:
    """The validation report, pooled over sources (or the only source's), and per source."""
    reports = source_reports(model, validation)
    return {
        "validation": reports.get(POOLED, reports[validation.images.source_names[0]]),
        "validation_by_source": {k: v for k, v in reports.items() if k != POOLED},
    }


def previous_version_metrics(previous: Path, tests: LabelledImages, with_boxes: list[Path]) -> dict:
    """An earlier model directory measured on the same test splits (and boxes), with its own preprocessing."""
    model = load_model_dir(previous)
    result = {"version": model.config.extra.get("version"), "test_by_source": evaluate_sources(model, tests)}
    earlier = json.loads((previous / METRICS_FILENAME).read_text()) if (previous / METRICS_FILENAME).is_file() else {}
    for key in ("explanations", "robustness_test", "invariance_check"):  # measured on the same test splits
        if key in earlier:
            result[key] = earlier[key]
    result["test_by_source"].pop(POOLED, None)
    if with_boxes:
        result["localization"] = localization_report(model, with_boxes[0], test_images(with_boxes[0]), "test",
                                                     [DEFAULT_METHOD])
    return result


def write_plots(out: Path, model: PneumoniaModel, validation: ScoredImages, tests: ScoredImages,
                metrics: dict) -> None:
    """Training curves, ROC per source, the headline test's confusion matrix and reliability per source."""
    plots.plot_training_curves(out / HISTORY_FILENAME, out / "training_curves.png")
    curves = {}
    for split, scored in (("validation", validation), ("test", tests)):
        for name in scored.images.source_names:
            of_source = scored.of_source(name)
            curves[f"{split} {name}"] = (of_source.images.labels, of_source.probabilities)
    plots.plot_roc(curves, out / "roc.png")
    plots.plot_confusion_matrix(metrics["test"]["confusion_matrix"]["rows_true_cols_predicted"],
                                f"test ({tests.images.source_names[0]}), threshold {model.config.threshold:.2f}",
                                out / "confusion_matrix.png")
    plots.plot_reliability({name: values for name, values in curves.items() if name.startswith("test")},
                           "test (calibrated)", out / "reliability.png")
    plots.plot_risk_coverage({f"test {name}": report for name, report in metrics["test_by_source"].items()},
                             out / "risk_coverage.png")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a training run directory")
    parser.add_argument("--data", type=Path, nargs="+", default=[DEFAULT_DATA_DIR], help="the run's data sources")
    parser.add_argument("--previous", type=Path, help="an earlier model directory to measure beside this one")
    parser.add_argument("--what-changed", default="", help="what changed from --previous and why, for the card")
    parser.add_argument("--keep-gate", action="store_true",
                        help="keep the input gate already fitted by python -m training.gate (same weights)")
    parser.add_argument("--keep-calibration", action="store_true",
                        help="keep the calibration, threshold and band that --validation-only fitted (same rules)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--measure-only", action="store_true",
                      help="only measure validation and test again (after refitting the gate) and rewrite the card")
    mode.add_argument("--validation-only", action="store_true",
                      help="calibrate and measure on validation alone, no test split read (to choose between runs)")
    args = parser.parse_args(argv)
    if args.measure_only:
        refresh_measures(args.model, args.data)
    elif args.validation_only:
        validation_only_report(args.model, args.data)
    else:
        write_report(args.model, args.data, args.previous, args.what_changed, args.keep_gate, args.keep_calibration)


if __name__ == "__main__":
    main()
