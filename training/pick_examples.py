"""Choose the app's example X-rays, children and adults, from each source's test split and write
examples/manifest.csv.

    python -m training.pick_examples --model model --data-root ../shared/data

For each source (children: Kermany's official test split; adults: the RSNA held-out test split) and each class:
one case the model gets right with confidence (typical), the one closest to its threshold (borderline) and one
it gets wrong (misclassified), when it gets any wrong. Adult pneumonias are picked among those with the
radiologists' boxes. Only names go in the manifest, relative to the data root; the images stay in the data
sets (see each row's provenance) and are read from EXAMPLES_DIR or EXAMPLES_REPO at start.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from cxr_pneumonia.config import DATA_ROOT, EXAMPLES_MANIFEST, LABELS
from cxr_pneumonia.examples import read_boxes
from cxr_pneumonia.model import load_model_dir
from cxr_pneumonia.sources import SOURCES, DataSource
from training.data import test_images
from training.evaluate import predict_paths

NOTES = {
    "typical": "typical: the model is right and confident",
    "borderline": "borderline: close to the decision threshold",
    "misclassified": "misclassified: the model gets this one wrong",
}
CONFIDENT = 0.9  # calibrated probability of the true class for a "typical" case
MANIFEST_COLUMNS = ("path", "population", "label", "note", "provenance")


def pick(probabilities: np.ndarray, labels: np.ndarray, threshold: float, seed: int,
         eligible: np.ndarray | None = None) -> list[tuple[int, str]]:
    """Indices with their kind for each class, among the eligible images: typical (at random among the right
    and confident, else the most confident right one), borderline and misclassified (at random)."""
    rng = np.random.default_rng(seed)
    eligible = np.ones(len(labels), dtype=bool) if eligible is None else eligible
    predicted = (probabilities >= threshold).astype(int)
    chosen: list[tuple[int, str]] = []
    for label in (0, 1):
        in_class = (labels == label) & eligible
        confidence = probabilities if label else 1 - probabilities
        right = np.flatnonzero(in_class & (predicted == label))
        confident = right[confidence[right] > CONFIDENT]
        if confident.size:
            chosen.append((int(rng.choice(confident)), "typical"))
        elif right.size:
            chosen.append((int(right[np.argmax(confidence[right])]), "typical"))
        candidates = np.flatnonzero(in_class)
        border = int(candidates[np.argmin(np.abs(probabilities[candidates] - threshold))])
        chosen.append((border, "borderline"))
        wrong = np.setdiff1d(np.flatnonzero(in_class & (predicted != label)), [border])
        if wrong.size:
            chosen.append((int(rng.choice(wrong)), "misclassified"))
    return chosen


def source_rows(model, data_root: Path, source: DataSource, seed: int) -> list[list[str]]:
    """The manifest rows of one source's test split."""
    data_dir = data_root / source.name
    images = test_images(data_dir)
    boxes = read_boxes(data_dir)
    eligible = np.array([label == 0 or not boxes or Path(path).name in boxes
                         for path, label in zip(images.paths, images.labels, strict=True)])
    probabilities = predict_paths(model, images.paths)
    return [[Path(images.paths[index]).relative_to(data_root).as_posix(), source.population,
             LABELS[images.labels[index]], NOTES[kind], source.provenance]
            for index, kind in pick(probabilities, images.labels, model.config.threshold, seed, eligible)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data-root", type=Path, default=DATA_ROOT, help="folder holding the data sets")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=EXAMPLES_MANIFEST)
    args = parser.parse_args(argv)
    model = load_model_dir(args.model)
    rows = [row for source in SOURCES.values() for row in source_rows(model, args.data_root, source, args.seed)]
    with args.out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(MANIFEST_COLUMNS)
        writer.writerows(rows)
    print(args.out.read_text())


if __name__ == "__main__":
    main()
