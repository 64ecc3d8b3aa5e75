"""Does the model read the look of a hospital's images (contrast, gamma, histogram equalisation) as a cue?

    python -m training.contrast_check --model model     # the run's validation split, per source

The RSNA copies were histogram-equalised by whoever published them; other hospitals' X-rays are not. Each
validation image is changed before the usual preprocessing (gamma 0.5 and 2, or equalised as the RSNA
copies were) and the calibrated probabilities compared with the unchanged image's, per source.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from cxr_pneumonia.imaging import read_image_file
from cxr_pneumonia.metrics import roc_auc
from cxr_pneumonia.model import PneumoniaModel, load_model_dir
from training.data import LabelledImages, validation_images
from training.evaluate import predict_grays
from training.metrics_file import store_in_metrics


def gamma(value: float) -> Callable[[np.ndarray], np.ndarray]:
    """A change of the image's gamma (on its own 0-1 range)."""
    def change(gray: np.ndarray) -> np.ndarray:
        low, high = float(gray.min()), float(gray.max())
        return low + (high - low) * ((gray - low) / max(high - low, 1e-6)) ** value
    return change


def equalised_as_8_bit(gray: np.ndarray) -> np.ndarray:
    """The image as 8-bit and histogram-equalised by Pillow, as the RSNA copies were published."""
    low, high = float(gray.min()), float(gray.max())
    as_bytes = np.round(255 * (gray - low) / max(high - low, 1e-6)).astype(np.uint8)
    return np.asarray(ImageOps.equalize(Image.fromarray(as_bytes)), dtype=np.float32)


CHANGES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "gamma 0.5": gamma(0.5), "gamma 2": gamma(2.0), "histogram equalised": equalised_as_8_bit,
}


def contrast_report(model: PneumoniaModel, images: LabelledImages, before: np.ndarray | None = None) -> list[dict]:
    """Per source and change: mean |change of probability|, share of decisions flipped, AUC before and after.
    `before`: the unchanged images' calibrated probabilities, in the images' order, when already predicted."""
    rows = []
    sources = np.array(images.sources)
    for source in images.source_names:
        of_source = images.of_source(source)
        grays = [read_image_file(path) for path in of_source.paths]
        unchanged = predict_grays(model, grays) if before is None else before[sources == source]
        for name, change in CHANGES.items():
            after = predict_grays(model, [change(gray) for gray in grays])
            flipped = (unchanged >= model.config.threshold) != (after >= model.config.threshold)
            rows.append({"source": source, "change": name, "n": len(grays),
                         "mean_abs_probability_change": float(np.mean(np.abs(after - unchanged))),
                         "decisions_flipped": float(flipped.mean()),
                         "auc_before": roc_auc(of_source.labels, unchanged),
                         "auc_after": roc_auc(of_source.labels, after)})
    return rows


def format_row(row: dict) -> str:
    """One line of the report."""
    return (f"{row['source']:16s} {row['change']:20s} mean |dp| {row['mean_abs_probability_change']:.3f}  "
            f"flipped {row['decisions_flipped']:.3f}  AUC {row['auc_before']:.3f} -> {row['auc_after']:.3f} "
            f"(n={row['n']})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="model directory with its split.json")
    parser.add_argument("--into-metrics", action="store_true",
                        help="store the rows as 'contrast_check' in metrics.json")
    args = parser.parse_args(argv)
    rows = contrast_report(load_model_dir(args.model), validation_images(args.model))
    for row in rows:
        print(format_row(row))
    if args.into_metrics:
        store_in_metrics(args.model, "contrast_check", rows)


if __name__ == "__main__":
    main()
