"""Evaluate a model directory on a labelled folder (NORMAL/ and PNEUMONIA/ inside), or measure how many
images of a folder of non-chest-X-rays its input gate refuses.

    python -m training.evaluate --model model --data ../shared/data/chest_xray/test --json test.json
    python -m training.evaluate --model model --not-cxr photos/ --json photos.json

On a labelled folder the classification metrics are over ALL images, as if the gate were off (a refused
image still counts with its probability); `rejected_fraction` is the share the gate refused.
On --not-cxr, every file under the folder counts (recursively); files the decoder cannot read count as
refused by the decoder and are reported apart from the gate's refusals.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from cxr_pneumonia.gate import refused_by
from cxr_pneumonia.imaging import ImageDecodeError
from cxr_pneumonia.metrics import binary_report
from cxr_pneumonia.model import PneumoniaModel, load_model_dir
from training.data import LabelledImages, list_labelled_images

BATCH_SIZE = 64


def input_batches(model: PneumoniaModel, paths: list[str]) -> Iterator[np.ndarray]:
    """Batches of model inputs for image files, read and preprocessed as the app does."""
    for start in range(0, len(paths), BATCH_SIZE):
        yield np.stack([model.preprocess_file(p) for p in paths[start : start + BATCH_SIZE]])


def predict_paths(model: PneumoniaModel, paths: list[str]) -> np.ndarray:
    """Calibrated pneumonia probabilities for image files, through the app's predict path."""
    return np.concatenate([np.zeros(0), *(model.probabilities(batch) for batch in input_batches(model, paths))])


def predict_and_gate_paths(model: PneumoniaModel, paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated pneumonia probabilities and the input gate's refusals (booleans) for image files."""
    probabilities, refused = [np.zeros(0)], [np.zeros(0, dtype=bool)]
    for batch in input_batches(model, paths):
        probabilities.append(model.probabilities(batch))
        refused.append(model.gate.refused(batch))
    return np.concatenate(probabilities), np.concatenate(refused)


def evaluate_images(model: PneumoniaModel, images: LabelledImages) -> tuple[dict, np.ndarray]:
    """The metric report at the model's threshold over all images, with the share the gate refused,
    and the per-image probabilities."""
    probabilities, refused = predict_and_gate_paths(model, images.paths)
    report = binary_report(images.labels, probabilities, model.config.threshold)
    report["rejected_fraction"] = float(refused.mean()) if len(refused) else 0.0
    report["input_gate"] = model.gate.present
    return report, probabilities


def gate_report(model: PneumoniaModel, paths: list[str]) -> dict:
    """How many of the image files the decoder or the input gate refuses (and over which score's limit)."""
    n_unreadable = n_gate = 0
    over = dict.fromkeys(model.gate.thresholds, 0)
    for start in range(0, len(paths), BATCH_SIZE):
        batch = readable_inputs(model, paths[start : start + BATCH_SIZE])
        n_unreadable += min(BATCH_SIZE, len(paths) - start) - len(batch)
        scores = model.gate.scores(batch)
        n_gate += int(refused_by(scores, model.gate.thresholds, len(batch)).sum())
        for name, values in scores.items():
            over[name] += int(np.sum(values > model.gate.thresholds[name]))
    n_readable = len(paths) - n_unreadable
    return {
        "n": len(paths),
        "n_refused_by_decoder": n_unreadable,
        "n_refused_by_gate": n_gate,
        "n_over_limit_by_score": over,
        "rejected_fraction": (n_gate + n_unreadable) / len(paths) if paths else 0.0,
        "gate_rejected_fraction_of_readable": n_gate / n_readable if n_readable else 0.0,
        "input_gate": model.gate.present,
    }


def readable_inputs(model: PneumoniaModel, paths: list[str]) -> np.ndarray:
    """The model inputs of the files the decoder can read, stacked; unreadable files are skipped."""
    inputs = []
    for path in paths:
        try:
            inputs.append(model.preprocess_file(path))
        except ImageDecodeError:
            continue
    return np.stack(inputs) if inputs else np.zeros((0, model.config.image_size, model.config.image_size, 1), np.float32)


def list_files(folder: str | Path) -> list[str]:
    """Every file under `folder`, recursively, sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    return sorted(str(path) for path in folder.rglob("*") if path.is_file())


def format_report(report: dict) -> str:
    """A short human-readable summary of a metric report."""
    ci = report["ci95"]
    lines = [f"n = {report['n']} ({report['n_pneumonia']} pneumonia, {report['n_normal']} normal), threshold {report['threshold']:.3f}"]
    for key in ("accuracy", "auc", "sensitivity", "specificity", "precision"):
        low, high = ci[key]
        lines.append(f"{key:12s} {report[key]:.4f}  (95% CI {low:.4f}-{high:.4f})")
    lines.append(f"{'f1':12s} {report['f1']:.4f}")
    lines.append(f"{'ece':12s} {report['ece']:.4f}")
    (tn, fp), (fn, tp) = report["confusion_matrix"]["rows_true_cols_predicted"]
    lines.append(f"confusion    true NORMAL: {tn} normal / {fp} pneumonia; true PNEUMONIA: {fn} normal / {tp} pneumonia")
    lines.append(format_rejected(report))
    return "\n".join(lines)


def format_rejected(report: dict) -> str:
    """The share of images refused, by the decoder and by the input gate (or a note that there is none)."""
    gate = "by the input gate" if report["input_gate"] else "by the input gate (this model has none)"
    if "n_refused_by_decoder" in report:
        return (f"rejected     {report['rejected_fraction']:.4f} of {report['n']} files: "
                f"{report['n_refused_by_decoder']} unreadable, {report['n_refused_by_gate']} {gate}")
    return f"rejected     {report['rejected_fraction']:.4f} of {report['n']} images {gate}; metrics above are over all images"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="model directory (model.keras + config.json)")
    folders = parser.add_mutually_exclusive_group(required=True)
    folders.add_argument("--data", type=Path, help="folder with NORMAL/ and PNEUMONIA/")
    folders.add_argument("--not-cxr", type=Path, help="folder of images that are not chest X-rays (recursive)")
    parser.add_argument("--json", type=Path, help="write the report here as JSON")
    args = parser.parse_args(argv)
    model = load_model_dir(args.model)
    if args.not_cxr:
        report = gate_report(model, list_files(args.not_cxr))
        print(format_rejected(report))
    else:
        report, _ = evaluate_images(model, list_labelled_images(args.data))
        print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
