"""Leave-one-source-out runs, the visible stand-in for hospitals the project does not have.

    python -m training.loso --runs runs/loso_sites_rsna_pneumonia runs/loso_framing_rsna_pneumonia \
        --data ../shared/data/chest_xray ../shared/data/rsna_pneumonia --json runs/loso.json

Each run was trained with --holdout-source: it never saw that source. It is calibrated and thresholded on the
validation images of the source it trained on (training.report's rules), then measured on the held-out source's
validation images: AUC, sensitivity and specificity at the in-source threshold, balanced ECE and, with --suite,
the robustness suite's worst-case specificity at severity 2 there. No test split is read.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from cxr_pneumonia.acquisition import CHANGES
from cxr_pneumonia.metrics import balanced_ece
from cxr_pneumonia.model import load_model_dir
from training.data import validation_images
from training.evaluate import evaluate_images
from training.report import calibrate_run
from training.robustness import run_suite, worst_cases
from training.run_files import RUN_FILENAME

SUITE_SEVERITY = 2


def measure_run(run_dir: Path, data_dirs: list[Path], suite: bool) -> dict:
    """One stand-in: in-source validation AUC, and the held-out source's validation measures."""
    run, trained_on = calibrate_run(run_dir, data_dirs)
    held_out = run["holdout_source"]
    model = load_model_dir(run_dir)
    validation = validation_images(run_dir)
    unseen = validation.of_source(held_out)
    report, probabilities = evaluate_images(model, unseen)
    in_source = evaluate_images(model, trained_on)[0]
    entry = {
        "run": run_dir.name,
        "augment": run["augment"],
        "trained_on": trained_on.source_names,
        "held_out": held_out,
        "batches": run["steps_per_epoch"] * run["epochs_run"],
        "in_source_auc": in_source["auc"],
        "threshold": model.config.threshold,
        "auc": report["auc"],
        "sensitivity": report["sensitivity"],
        "specificity": report["specificity"],
        "balanced_ece": balanced_ece(unseen.labels, probabilities),
        "n": len(unseen),
    }
    if suite:
        rows = run_suite(model, unseen, list(CHANGES), [SUITE_SEVERITY])
        entry["worst_specificity_severity_2"] = worst_cases(rows)[str(SUITE_SEVERITY)][held_out]["specificity"]
    return entry


def recipe_means(entries: list[dict]) -> dict[str, dict[str, float]]:
    """Per augmentation recipe, the held-out AUC and specificity averaged over the held-out directions."""
    means: dict[str, dict[str, float]] = {}
    for recipe in dict.fromkeys(entry["augment"] for entry in entries):
        mine = [entry for entry in entries if entry["augment"] == recipe]
        means[recipe] = {key: float(np.mean([entry[key] for entry in mine])) for key in ("auc", "specificity")}
        means[recipe]["directions"] = len(mine)
    return means


def markdown_table(entries: list[dict]) -> str:
    """The stand-in table for the card and the docs."""
    lines = ["| recipe | trained on | held out | AUC on held-out validation | sensitivity | specificity "
             "| balanced ECE | worst specificity under the suite (severity 2) | in-source validation AUC |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for entry in entries:
        worst = entry.get("worst_specificity_severity_2")
        worst_text = f"{worst['value']:.3f} ({worst['change'].replace('_', ' ')})" if worst else "not measured"
        lines.append(f"| {entry['augment']} | {', '.join(entry['trained_on'])} | {entry['held_out']} "
                     f"| {entry['auc']:.3f} | {entry['sensitivity']:.3f} | {entry['specificity']:.3f} "
                     f"| {entry['balanced_ece']:.3f} | {worst_text} | {entry['in_source_auc']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, nargs="+", required=True, help="runs trained with --holdout-source")
    parser.add_argument("--data", type=Path, nargs="+", required=True, help="the data sources")
    parser.add_argument("--suite", action="store_true", help="also the robustness suite at severity 2 (slow)")
    parser.add_argument("--json", type=Path, help="write the entries and per-recipe means here")
    args = parser.parse_args(argv)
    for run_dir in args.runs:
        if not json.loads((run_dir / RUN_FILENAME).read_text()).get("holdout_source"):
            parser.error(f"{run_dir} was not trained with --holdout-source")
    entries = [measure_run(run_dir, args.data, args.suite) for run_dir in args.runs]
    result = {"entries": entries, "means": recipe_means(entries)}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    print(markdown_table(entries))
    print(json.dumps(result["means"], indent=1))


if __name__ == "__main__":
    main()
