"""How much does a change of acquisition still reach the model input? The check run before training the canonical
input, with no model.

    python -m training.invariance_check --data ../shared/data/chest_xray ../shared/data/rsna_pneumonia \
        --split-from model --per-source 60 --out runs/invariance.json

For validation images of each source (the split recorded in --split-from's split.json) and each change of
cxr_pneumonia.acquisition at --severity: the mean absolute difference between the preprocessed image and the
preprocessed changed image, under each normalisation compared. The canonical input's band energies are computed
as training computes them (training.train.training_normalization), on the same sources' training images.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from cxr_pneumonia.acquisition import CHANGES, apply_change
from cxr_pneumonia.imaging import read_image_file
from cxr_pneumonia.preprocessing import CANONICAL, Normalization, to_model_input
from training import data
from training.metrics_file import store_in_metrics
from training.train import training_normalization

# Changes that move the anatomy in the frame: a pixelwise difference also counts the move, under any preprocessing.
GEOMETRIC = ("rotation", "crop")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, nargs="+", required=True, help="the data sources")
    parser.add_argument("--split-from", type=Path, default=Path("model"), help="a run whose validation split is read")
    parser.add_argument("--per-source", type=int, default=60, help="validation images per source")
    parser.add_argument("--severity", type=float, default=2.0)
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--compare", nargs="+", default=["equalize", CANONICAL], help="normalisations compared")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the table as JSON here")
    parser.add_argument("--write-metrics", type=Path, default=None,
                        help="a model directory whose metrics.json takes the table (invariance_check), for its card")
    return parser.parse_args(argv)


def mean_differences(grays: list[np.ndarray], normalization: Normalization, image_size: int, severity: float,
                     seed: int) -> dict[str, float]:
    """Per change: the mean over images of the mean absolute difference of the model inputs it makes."""
    inputs = [to_model_input(gray, image_size, normalization) for gray in grays]
    table = {}
    for change in CHANGES:
        differences = []
        for index, (gray, before) in enumerate(zip(grays, inputs, strict=True)):
            changed = apply_change(change, gray, severity, np.random.default_rng([seed, index]))
            differences.append(float(np.abs(to_model_input(changed, image_size, normalization) - before).mean()))
        table[change] = float(np.mean(differences))
    return table


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    sources = data.concatenate([data.development_images(folder) for folder in args.data])
    train_images, _ = data.split_each_source(sources, 0.15, 42)
    validation = data.validation_images(args.split_from)
    rng = np.random.default_rng(args.seed)
    grays = []
    for source in validation.source_names:
        paths = validation.of_source(source).paths
        grays += [read_image_file(paths[index]) for index in rng.permutation(len(paths))[: args.per_source]]
    tables = {name: mean_differences(grays, training_normalization(name, train_images, 42), args.image_size,
                                     args.severity, args.seed) for name in args.compare}
    first, *others = args.compare
    print(f"{len(grays)} validation images, severity {args.severity:g}: mean |difference| of the model input")
    print(f"{'change':18s}" + "".join(f"{name:>12s}" for name in args.compare) + "  change vs " + first)
    for change in CHANGES:
        row = "".join(f"{tables[name][change]:12.4f}" for name in args.compare)
        ratios = " ".join(f"{100 * (tables[name][change] / tables[first][change] - 1):+.0f} %" for name in others)
        print(f"{change:18s}{row}  {ratios}" + ("  (moves the anatomy)" if change in GEOMETRIC else ""))
    result = {"n_images": len(grays), "severity": args.severity, "tables": tables}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    if args.write_metrics:
        store_in_metrics(args.write_metrics, "invariance_check", result)


if __name__ == "__main__":
    main()
