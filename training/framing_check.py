"""Does the model read how a radiograph was framed as a label cue? Crop images tighter and compare.

    python -m training.framing_check --model model                  # the run's validation split
    python -m training.framing_check --model model --data ../shared/data/chest_xray/test
    python -m training.framing_check --model model --into-metrics   # store it for the model card

In the training data most pneumonia images are tight crops of the lungs, while normals show shoulders
and abdomen, so a model can learn the framing instead of the lungs. Each image loses a fraction of
its height at the top and the same at the bottom before the usual preprocessing; a robust model calls
about as many normals pneumonia at every crop.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from cxr_pneumonia.imaging import read_image_file
from cxr_pneumonia.model import PneumoniaModel, load_model_dir
from training.data import LabelledImages, list_labelled_images, validation_images
from training.evaluate import predict_grays
from training.metrics_file import store_in_metrics

DEFAULT_CROPS = (0.0, 0.075, 0.125)


def cropped_vertically(gray: np.ndarray, fraction: float) -> np.ndarray:
    """The image without `fraction` of its height at the top and the same at the bottom."""
    if not 0.0 <= fraction < 0.5:
        raise ValueError(f"crop fraction must be in [0, 0.5), got {fraction}")
    cut = int(gray.shape[0] * fraction)
    return gray[cut : gray.shape[0] - cut]


def probabilities_after_crop(model: PneumoniaModel, grays: list[np.ndarray], fraction: float) -> np.ndarray:
    """Calibrated pneumonia probabilities of the images cropped by `fraction` top and bottom."""
    return predict_grays(model, [cropped_vertically(gray, fraction) for gray in grays])


def framing_report(model: PneumoniaModel, images: LabelledImages, crops: tuple[float, ...],
                   uncropped: np.ndarray | None = None) -> list[dict]:
    """Per crop: the share of normals called pneumonia and of pneumonias caught, at the model's threshold.
    `uncropped`: the images' calibrated probabilities as they are, in order, when already predicted (crop 0)."""
    grays = [read_image_file(path) for path in images.paths]
    normal, pneumonia = images.labels == 0, images.labels == 1
    rows = []
    for fraction in crops:
        if fraction == 0.0 and uncropped is not None:
            probabilities = uncropped
        else:
            probabilities = probabilities_after_crop(model, grays, fraction)
        called = probabilities >= model.config.threshold
        rows.append({
            "crop_top_and_bottom": fraction,
            "normal_called_pneumonia": float(called[normal].mean()) if normal.any() else None,
            "sensitivity": float(called[pneumonia].mean()) if pneumonia.any() else None,
            "n_normal": int(normal.sum()),
            "n_pneumonia": int(pneumonia.sum()),
        })
    return rows


def format_row(row: dict) -> str:
    """One line of the framing report."""
    def share(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    return (f"crop {row['crop_top_and_bottom']:.1%} top and bottom: normals called pneumonia "
            f"{share(row['normal_called_pneumonia'])} (n={row['n_normal']}), "
            f"sensitivity {share(row['sensitivity'])} (n={row['n_pneumonia']})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="model directory with its split.json")
    parser.add_argument("--data", type=Path,
                        help="folder with NORMAL/ and PNEUMONIA/ (default: the run's validation split)")
    parser.add_argument("--crops", type=float, nargs="+", default=list(DEFAULT_CROPS),
                        help="fractions of the height cut at the top and again at the bottom")
    parser.add_argument("--json", type=Path, help="write the rows here as JSON")
    parser.add_argument("--into-metrics", action="store_true",
                        help="store the validation rows as 'framing_check' in the model's metrics.json")
    args = parser.parse_args(argv)
    if args.into_metrics and args.data:
        parser.error("--into-metrics stores the validation split's check; leave out --data")
    model = load_model_dir(args.model)
    images = list_labelled_images(args.data) if args.data else validation_images(args.model)
    rows = framing_report(model, images, tuple(args.crops))
    for row in rows:
        print(format_row(row))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    if args.into_metrics:
        store_in_metrics(args.model, "framing_check", rows)


if __name__ == "__main__":
    main()
