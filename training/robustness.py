"""The robustness suite: a model measured on the same X-rays under seeded changes of acquisition.

    python -m training.robustness --model model --data ../shared/data/chest_xray ../shared/data/rsna_pneumonia
    python -m training.robustness --model runs/v3 --data ... --split validation --severities 2 --json out.json
    python -m training.robustness --model model --data ... --split test --write-metrics

Every change of cxr_pneumonia.acquisition at each severity, applied to the decoded image before the model's own
preprocessing, as a file from another site would arrive. Per change, severity and source: AUC, sensitivity and
specificity at the model's threshold, ECE at the source's prevalence and with the classes weighted to half, and
the share the input gate refuses (the metrics count every image, refused or not, as training.evaluate does).
With --write-metrics the table goes into the model's metrics.json under robustness_<split>, for the card.
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from cxr_pneumonia.acquisition import CHANGES, HELD_OUT_CHANGES, SEVERITIES, apply_change
from cxr_pneumonia.config import METRICS_FILENAME
from cxr_pneumonia.imaging import read_image_file
from cxr_pneumonia.metrics import balanced_ece, expected_calibration_error, roc_auc
from cxr_pneumonia.model import PneumoniaModel, load_model_dir
from training.data import LabelledImages, concatenate, test_images, validation_images
from training.evaluate import BATCH_SIZE

AS_IS = "none"
SUITE_SEED = 2020  # the changes' random draws (tilt direction, crop position, noise) depend on it and the image
WORKERS = 2


def change_seed(change: str, severity: int, index: int) -> list[int]:
    """The seed of one image under one change and severity: the same draw on every run and for every model."""
    return [SUITE_SEED, list(CHANGES).index(change) if change in CHANGES else 99, severity, index]


def changed_input(model: PneumoniaModel, gray: np.ndarray, change: str, severity: int, index: int) -> np.ndarray:
    """The model input of one decoded image under a change (AS_IS: as it is)."""
    if change != AS_IS:
        gray = apply_change(change, gray, severity, np.random.default_rng(change_seed(change, severity, index)))
    return model.preprocess(gray)


def scores_under(model: PneumoniaModel, grays: list[np.ndarray], change: str, severity: int,
                 pool: ThreadPoolExecutor) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated probabilities and the gate's refusals of the images under one change and severity."""
    inputs = list(pool.map(lambda item: changed_input(model, item[1], change, severity, item[0]), enumerate(grays)))
    probabilities, refused = [], []
    for start in range(0, len(inputs), BATCH_SIZE):
        batch = np.stack(inputs[start : start + BATCH_SIZE])
        probabilities.append(model.probabilities(batch))
        refused.append(model.gate.refused(batch) if model.gate.present else np.zeros(len(batch), dtype=bool))
    return np.concatenate(probabilities), np.concatenate(refused)


def row(change: str, severity: int, source: str, labels: np.ndarray, probabilities: np.ndarray,
        refused: np.ndarray, threshold: float) -> dict:
    """One line of the table."""
    labels = labels.astype(bool)
    called = probabilities >= threshold
    return {
        "change": change,
        "severity": severity,
        "source": source,
        "held_out_of_training": change in HELD_OUT_CHANGES or severity > 2,
        "n": len(labels),
        "auc": roc_auc(labels, probabilities),
        "sensitivity": float(called[labels].mean()) if labels.any() else float("nan"),
        "specificity": float((~called[~labels]).mean()) if (~labels).any() else float("nan"),
        "ece": expected_calibration_error(labels, probabilities),
        "balanced_ece": balanced_ece(labels, probabilities),
        "refused": float(refused.mean()),
    }


def run_suite(model: PneumoniaModel, images: LabelledImages, changes: list[str], severities: list[int]) -> list[dict]:
    """The table: the images as they are, then under each change at each severity, per source."""
    rows = []
    with ThreadPoolExecutor(WORKERS) as pool:
        for source in images.source_names:
            of_source = images.of_source(source)
            grays = list(pool.map(read_image_file, of_source.paths))
            conditions = [(AS_IS, 0)] + [(change, severity) for change in changes for severity in severities]
            for change, severity in conditions:
                probabilities, refused = scores_under(model, grays, change, severity, pool)
                rows.append(row(change, severity, source, of_source.labels, probabilities, refused,
                                model.config.threshold))
                print(format_row(rows[-1]), flush=True)
    return rows


def worst_cases(rows: list[dict]) -> dict[str, dict[str, dict]]:
    """Per severity and source, the lowest specificity, sensitivity and AUC and the highest refused share over the
    changes, with the change that gave each."""
    summary: dict[str, dict[str, dict]] = {}
    for entry in rows:
        if entry["change"] == AS_IS:
            continue
        slot = summary.setdefault(str(entry["severity"]), {}).setdefault(entry["source"], {})
        for key, sign in (("specificity", 1), ("sensitivity", 1), ("auc", 1), ("refused", -1)):
            if key not in slot or sign * entry[key] < sign * slot[key]["value"]:
                slot[key] = {"value": entry[key], "change": entry["change"]}
    return summary


def suite_images(model_dir: Path, data_dirs: list[Path], split: str) -> LabelledImages:
    """The model's patient-grouped validation images, or the test split of each data source."""
    if split == "validation":
        return validation_images(model_dir)
    return concatenate([test_images(folder) for folder in data_dirs])


def format_row(entry: dict) -> str:
    return (f"{entry['change']:>16} {entry['severity']} {entry['source']:>15}  AUC {entry['auc']:.3f}  "
            f"sens {entry['sensitivity']:.3f}  spec {entry['specificity']:.3f}  ECE {entry['ece']:.3f}  "
            f"balanced ECE {entry['balanced_ece']:.3f}  refused {entry['refused']:.1%}")


def store(metrics_path: Path, within: list[str], key: str, result: dict) -> None:
    """Put `result` into a metrics.json at `key`, inside the nested blocks `within`."""
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    block = metrics
    for name in within:
        block = block.setdefault(name, {})
    block[key] = result
    metrics_path.write_text(json.dumps(metrics, indent=2))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a model directory (or a calibrated run)")
    parser.add_argument("--data", type=Path, nargs="+", required=True, help="the data sources")
    parser.add_argument("--split", choices=("validation", "test"), default="test")
    parser.add_argument("--changes", nargs="+", choices=list(CHANGES), default=list(CHANGES))
    parser.add_argument("--severities", nargs="+", type=int, choices=SEVERITIES, default=list(SEVERITIES))
    parser.add_argument("--json", type=Path, help="write the table and its worst cases here")
    parser.add_argument("--write-metrics", action="store_true",
                        help="also store them in the model's metrics.json as robustness_<split> (for the card)")
    parser.add_argument("--as-previous-of", type=Path,
                        help="a newer model directory whose card shows this model beside it: store them in its "
                             "metrics.json under previous_version")
    args = parser.parse_args(argv)
    model = load_model_dir(args.model)
    rows = run_suite(model, suite_images(args.model, args.data, args.split), args.changes, args.severities)
    result = {"split": args.split, "seed": SUITE_SEED, "version": model.config.extra.get("version"),
              "threshold": model.config.threshold, "held_out_of_training": list(HELD_OUT_CHANGES),
              "rows": rows, "worst": worst_cases(rows)}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    if args.write_metrics:
        store(args.model / METRICS_FILENAME, [], f"robustness_{args.split}", result)
    if args.as_previous_of:
        store(args.as_previous_of / METRICS_FILENAME, ["previous_version"], f"robustness_{args.split}", result)
    print(json.dumps(result["worst"], indent=1))


if __name__ == "__main__":
    main()
