"""Explanation quality per method: where the maps land, whether they survive the sanity check, how faithful
they are. Writes metrics.json["explanations"], which training.card renders as the card's per-method table.

    python -m training.explanations --model model --data-root ../shared/data --limit 50

- Localisation, on every pneumonia of the RSNA test split (radiologists' boxes): training.localization's
  report of the map of the evidence for PNEUMONIA (pointing-game hit rate, mIoU of the Otsu-thresholded map).
- On a seeded sample of `--limit` images (50 by default) of each test split, RSNA and Kermany, explaining the
  model's decision on each image: the Spearman rank correlation between the map of the trained model and that
  of copies with the cascade re-initialised from the logit down (Adebayo et al. 2018), one more layer group at
  each step; the check passes when the mean |rho| at the depth the app uses (from the logit down to the layer
  Grad-CAM explains) is below explanation_quality.RANDOMISATION_MAX_RHO. And the areas under the deletion and
  insertion curves of the decided class's calibrated probability (Petsiuk et al. 2018).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from cxr_pneumonia.config import DATA_ROOT
from cxr_pneumonia.explain import METHODS, Explainer, randomised_explainer
from cxr_pneumonia.explanation_quality import (
    BASELINE_BLUR_FRACTION,
    PERTURBATION_STEPS,
    RANDOMISATION_MAX_RHO,
    cascade_groups,
    passes_randomisation,
    rank_correlation,
    top_groups,
)
from cxr_pneumonia.lab import faithfulness
from cxr_pneumonia.model import PneumoniaModel, load_model_dir
from cxr_pneumonia.sources import SOURCES
from training.data import LabelledImages, subset, test_images
from training.localization import localization_report
from training.metrics_file import store_in_metrics

# The sources sampled, the one with boxes first: the card's table starts with it.
SAMPLED_SOURCES = sorted(SOURCES, key=lambda name: not SOURCES[name].has_boxes)
BOXED_SOURCE = SAMPLED_SOURCES[0]
DEFAULT_LIMIT = 50
BASELINE = f"the model input blurred with a Gaussian of sigma 1/{1 / BASELINE_BLUR_FRACTION:.0f} of its side"


def seeded_sample(images: LabelledImages, limit: int, seed: int) -> LabelledImages:
    """At most `limit` of the images, drawn without replacement with `seed`, in file order."""
    if len(images) <= limit:
        return images
    chosen = np.zeros(len(images), dtype=bool)
    chosen[np.random.default_rng(seed).choice(len(images), limit, replace=False)] = True
    return subset(images, chosen)


def cascade_explainers(model: PneumoniaModel) -> list[Explainer]:
    """An explainer per step of the cascade: the first with the logit re-initialised, the next with the layer
    group below it too, and so on down to the first layer."""
    groups = cascade_groups(model.keras_model)
    return [randomised_explainer(model, [name for group in groups[:depth] for name in group])
            for depth in range(1, len(groups) + 1)]


def sample_report(model: PneumoniaModel, explainer: Explainer, cascade: list[Explainer], check_depth: int,
                  images: LabelledImages, methods: list[str]) -> dict:
    """Per method over the images: rho at each cascade step, the check at `check_depth`, deletion and
    insertion areas, and milliseconds per map."""
    rhos = {method: [] for method in methods}  # per image: rho at each step
    areas = {method: [] for method in methods}  # per image: (deletion, insertion)
    seconds = dict.fromkeys(methods, 0.0)
    for path in images.paths:
        model_input = model.preprocess_file(path)
        label = model.predict_input(model_input).label
        trained = explainer.compare(model_input, label, methods)
        curves = faithfulness(model, model_input, label, {method: timed.heatmap for method, timed in trained.items()})
        for method, timed in trained.items():
            seconds[method] += timed.seconds
            rhos[method].append([rank_correlation(timed.heatmap, step.heatmap(model_input, label, method))
                                 for step in cascade])
            areas[method].append((curves[method].deletion_auc, curves[method].insertion_auc))
    return {"n": len(images), "methods": {method: method_summary(np.array(rhos[method]), np.array(areas[method]),
                                                                 check_depth, 1000 * seconds[method] / len(images))
                                          for method in methods}}


def method_summary(rhos: np.ndarray, areas: np.ndarray, check_depth: int, ms_per_map: float) -> dict:
    """Means over images of one method: (images, steps) rhos and (images, 2) deletion and insertion areas."""
    at_check = rhos[:, check_depth - 1]
    mean_abs = float(np.mean(np.abs(at_check)))
    return {"randomisation_rho": float(np.mean(at_check)), "randomisation_abs_rho": mean_abs,
            "randomisation_passed": passes_randomisation(mean_abs),
            "cascade_abs_rho": [float(value) for value in np.mean(np.abs(rhos), axis=0)],
            "deletion_auc": float(np.mean(areas[:, 0])), "insertion_auc": float(np.mean(areas[:, 1])),
            "ms_per_map": ms_per_map}


def explanations_report(model_dir: Path, data_root: Path, limit: int, seed: int, methods: list[str]) -> dict:
    """Localisation on the RSNA test pneumonias, then the sanity check and faithfulness on each test split's sample."""
    model = load_model_dir(model_dir)
    explainer = Explainer(model)
    groups = cascade_groups(model.keras_model)
    check_depth = len(top_groups(model.keras_model, model.config.gradcam_layer))
    cascade = cascade_explainers(model)
    return {
        "localization": localization_report(model, data_root / BOXED_SOURCE, test_images(data_root / BOXED_SOURCE),
                                            "test", methods),
        "sample_per_split": limit, "seed": seed, "explained_class": "the model's decision on each image",
        "randomisation": {"cascade": [list(group) for group in groups], "check_depth": check_depth,
                          "check_layers": [name for group in groups[:check_depth] for name in group],
                          "max_abs_rho": RANDOMISATION_MAX_RHO,
                          "rule": f"passes when the mean |Spearman rho| over the sample, between its map from the "
                                  f"trained model and from a copy with the layers from the logit down to the one "
                                  f"Grad-CAM explains re-initialised, is below {RANDOMISATION_MAX_RHO}"},
        "perturbation": {"steps": PERTURBATION_STEPS,
                         "baseline": BASELINE},
        "splits": {source: sample_report(model, explainer, cascade, check_depth,
                                         seeded_sample(test_images(data_root / source), limit, seed), methods)
                   for source in SAMPLED_SOURCES},
    }


def format_explanations(report: dict) -> str:
    """The report as a few aligned lines per split."""
    lines = []
    for source, split in report["splits"].items():
        lines.append(f"{source} test, {split['n']} images (seeded sample), the decided class explained:")
        for method, row in split["methods"].items():
            verdict = "passed" if row["randomisation_passed"] else "FAILED"
            lines.append(f"  {method:11s} randomisation mean rho {row['randomisation_rho']:+.3f}, mean |rho| "
                         f"{row['randomisation_abs_rho']:.3f} {verdict}  deletion AUC {row['deletion_auc']:.3f}  "
                         f"insertion AUC {row['insertion_auc']:.3f}  {row['ms_per_map']:.0f} ms/map")
    localization = report["localization"]
    lines.append(f"{localization['data']} test: {localization['n']} pneumonias with boxes, evidence for PNEUMONIA:")
    for method, row in localization["methods"].items():
        lines.append(f"  {method:32s} hit rate {row['hit_rate']:.3f}  mIoU (Otsu) {row['miou_otsu']:.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data-root", type=Path, default=DATA_ROOT,
                        help="the folder holding chest_xray/ and rsna_pneumonia/")
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help="images sampled from each test split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument("--no-save", action="store_true", help="print only; leave metrics.json alone")
    args = parser.parse_args(argv)
    report = explanations_report(args.model, args.data_root, args.limit, args.seed, args.methods)
    print(format_explanations(report))
    if not args.no_save:
        store_in_metrics(args.model, "explanations", report)


if __name__ == "__main__":
    main()
