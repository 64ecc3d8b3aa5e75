"""Turn a training run into a publishable model directory: calibration, metrics, plots, card.

    python -m training.report --model runs/cxr_cnn --data ../shared/data/chest_xray
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import keras
import numpy as np

from cxr_pneumonia.config import (
    CONFIG_FILENAME,
    DEFAULT_DATA_DIR,
    LABELS,
    METRICS_FILENAME,
    MODEL_FILENAME,
)
from cxr_pneumonia.model import ModelConfig, PneumoniaModel, load_model_dir
from cxr_pneumonia.preprocessing import PREPROCESSING_DESCRIPTION
from training import plots
from training.calibration import calibrate
from training.card import write_card
from training.data import (
    file_digest,
    list_labelled_images,
    patient_id,
    validation_images,
)
from training.evaluate import evaluate_images, format_report, predict_paths
from training.framing_check import DEFAULT_CROPS, framing_report
from training.gate import fit_gate
from training.train import HISTORY_FILENAME, RUN_FILENAME


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


def write_config(out: Path, run: dict, temperature: float, threshold: float, data_dir: Path) -> ModelConfig:
    """config.json: everything the app needs to use the model as it was trained."""
    manifest = data_dir / "MANIFEST.csv"
    config = {
        "labels": list(LABELS),
        "image_size": run["image_size"],
        "preprocessing": PREPROCESSING_DESCRIPTION,
        "threshold": threshold,
        "threshold_rule": "maximise Youden's J (sensitivity + specificity - 1) on the patient-grouped validation split",
        "temperature": temperature,
        "gradcam_layer": run["gradcam_layer"],
        "architecture": run["arch"],
        "data_manifest_sha256": file_digest(manifest) if manifest.is_file() else None,
        "code_version": code_version(),
        "version": run.get("version"),
    }
    (out / CONFIG_FILENAME).write_text(json.dumps(config, indent=2))
    return ModelConfig.from_json(config)


def write_report(out: Path, data_dir: Path) -> dict:
    """Calibrate on validation, fit the input gate, evaluate on val/test, write config, metrics, plots and card."""
    run = json.loads((out / RUN_FILENAME).read_text())
    keras_model = keras.saving.load_model(out / MODEL_FILENAME, compile=False, safe_mode=True)
    uncalibrated = PneumoniaModel(keras_model, ModelConfig(image_size=run["image_size"]))
    validation = validation_images(out)
    val_logits = uncalibrated.logits(np.stack([uncalibrated.preprocess_file(p) for p in validation.paths]))
    temperature, threshold = calibrate(val_logits, validation.labels)
    write_config(out, run, temperature, threshold, data_dir)
    fit_gate(out, data_dir)
    model = load_model_dir(out)

    val_probabilities = predict_paths(model, validation.paths)
    metrics = {"validation": evaluate_images(model, validation)[0]}
    test_images = list_labelled_images(data_dir / "test")
    metrics["test"], test_probabilities = evaluate_images(model, test_images)
    if (data_dir / "val").is_dir():
        metrics["official_val"] = evaluate_images(model, list_labelled_images(data_dir / "val"))[0]
    metrics["training"] = {**run, "n_validation_patients": len({patient_id(p) for p in validation.paths})}
    metrics["framing_check"] = framing_report(model, validation, DEFAULT_CROPS)
    (out / METRICS_FILENAME).write_text(json.dumps(metrics, indent=2))

    plots.plot_training_curves(out / HISTORY_FILENAME, out / "training_curves.png")
    plots.plot_roc({"validation": (validation.labels, val_probabilities),
                    "test": (test_images.labels, test_probabilities)}, out / "roc.png")
    plots.plot_confusion_matrix(metrics["test"]["confusion_matrix"]["rows_true_cols_predicted"],
                                f"test, threshold {threshold:.2f}", out / "confusion_matrix.png")
    plots.plot_reliability(test_images.labels, test_probabilities, "test (calibrated)", out / "reliability.png")
    write_card(out)
    print("test split\n" + format_report(metrics["test"]))
    return metrics


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a training run directory")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    args = parser.parse_args(argv)
    write_report(args.model, args.data)


if __name__ == "__main__":
    main()
