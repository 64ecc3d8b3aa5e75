"""Choose the app's example X-rays from the official test split and write examples/manifest.csv.

    python -m training.pick_examples --model model --data ../shared/data/chest_xray

Per class: two cases the model gets right with confidence, one it gets wrong at its threshold (hard)
and one closest to the threshold (borderline). Only names go in the manifest; the images stay in the
data set (CC BY 4.0) and are read from EXAMPLES_DIR or EXAMPLES_REPO at start.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from cxr_pneumonia.config import DEFAULT_DATA_DIR, EXAMPLES_MANIFEST, LABELS
from cxr_pneumonia.model import load_model_dir
from training.data import list_labelled_images
from training.evaluate import predict_paths

PROVENANCE = "Kermany et al. 2018, doi:10.17632/rscbjbr9sj.2, official test split, CC BY 4.0"


def pick(probabilities: np.ndarray, labels: np.ndarray, threshold: float, seed: int) -> list[tuple[int, str]]:
    """Indices with notes: confident and right, wrong (hard) and borderline, for each class."""
    rng = np.random.default_rng(seed)
    predicted = (probabilities >= threshold).astype(int)
    chosen: list[tuple[int, str]] = []
    for label in (0, 1):
        in_class = labels == label
        confidence = probabilities if label else 1 - probabilities
        right = np.flatnonzero(in_class & (predicted == label) & (confidence > 0.9))
        wrong = np.flatnonzero(in_class & (predicted != label))
        chosen += [(int(i), "typical: the model is right and confident") for i in rng.choice(right, 2, replace=False)]
        if len(wrong):
            chosen.append((int(rng.choice(wrong)), "hard: the model gets this one wrong"))
        border = np.flatnonzero(in_class)[np.argmin(np.abs(probabilities[in_class] - threshold))]
        chosen.append((int(border), "borderline: close to the decision threshold"))
    return chosen


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    model = load_model_dir(args.model)
    images = list_labelled_images(args.data / "test")
    probabilities = predict_paths(model, images.paths)
    with EXAMPLES_MANIFEST.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "note", "provenance"])
        for index, note in pick(probabilities, images.labels, model.config.threshold, args.seed):
            path = Path(images.paths[index])
            writer.writerow([f"test/{path.parent.name}/{path.name}", LABELS[images.labels[index]], note, PROVENANCE])
    print(EXAMPLES_MANIFEST.read_text())


if __name__ == "__main__":
    main()
