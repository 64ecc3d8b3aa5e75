"""Where Grad-CAM lands on the test split: share of heat in the lung fields against the border.

    python -m training.attention --model model --data ../shared/data/chest_xray/test

A coarse shortcut check without lung masks: in these frontal radiographs the lung fields lie inside the
central box (rows 10-85 %, columns 10-90 %); heat on the outer 8 % frame is where text markers, rulers
and borders sit. Writes gradcam_examples.png and an "attention" block into metrics.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from cxr_pneumonia.config import METRICS_FILENAME
from cxr_pneumonia.explain import Explainer, overlay_heatmap
from cxr_pneumonia.model import load_model_dir
from training.data import list_labelled_images

LUNG_BOX = (0.10, 0.85, 0.10, 0.90)  # top, bottom, left, right as fractions of the side
BORDER = 0.08


def region_masks(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks of the central lung box and of the outer border frame."""
    top, bottom, left, right = (round(fraction * size) for fraction in LUNG_BOX)
    lung = np.zeros((size, size), dtype=bool)
    lung[top:bottom, left:right] = True
    edge = round(BORDER * size)
    border = np.ones((size, size), dtype=bool)
    border[edge:-edge, edge:-edge] = False
    return lung, border


def heat_shares(heatmap: np.ndarray, lung: np.ndarray, border: np.ndarray) -> tuple[float, float, bool]:
    """Share of total heat in the lung box, share on the border, and whether the peak is on the border."""
    total = float(heatmap.sum())
    if total == 0:
        return float("nan"), float("nan"), False
    peak = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    return float(heatmap[lung].sum() / total), float(heatmap[border].sum() / total), bool(border[peak])


def attention_report(model_dir: Path, test_dir: Path, limit: int, seed: int = 0) -> tuple[dict, list]:
    """Heat shares over a seeded sample of test images, and a few (image, overlay, title) for a figure."""
    model = load_model_dir(model_dir)
    explainer = Explainer(model)
    images = list_labelled_images(test_dir)
    order = np.random.default_rng(seed).permutation(len(images))[:limit]
    lung, border = region_masks(model.config.image_size)
    lung_shares, border_shares, border_peaks, gallery = [], [], 0, []
    for index in order:
        model_input = model.preprocess_file(images.paths[index])
        prediction = model.predict_input(model_input)
        heatmap = explainer.heatmap(model_input, prediction.label)
        lung_share, border_share, peak_on_border = heat_shares(heatmap, lung, border)
        if np.isnan(lung_share):
            continue
        lung_shares.append(lung_share)
        border_shares.append(border_share)
        border_peaks += peak_on_border
        if len(gallery) < 8:
            truth = "PNEUMONIA" if images.labels[index] else "NORMAL"
            title = f"true {truth}\npredicted {prediction.label} ({prediction.pneumonia_probability:.2f})"
            gallery.append((model_input[..., 0], overlay_heatmap(model_input[..., 0], heatmap, 0.45), title))
    lung_area, border_area = lung.mean(), border.mean()
    report = {
        "n": len(lung_shares),
        "method": "Grad-CAM of the predicted class",
        "lung_box": LUNG_BOX,
        "lung_box_area_share": round(float(lung_area), 3),
        "mean_heat_share_in_lung_box": round(float(np.mean(lung_shares)), 3),
        "border_area_share": round(float(border_area), 3),
        "mean_heat_share_on_border": round(float(np.mean(border_shares)), 3),
        "share_of_images_with_peak_on_border": round(border_peaks / max(1, len(lung_shares)), 3),
    }
    return report, gallery


def plot_gallery(gallery: list, out: Path) -> None:
    """Overlays of the sampled test images in a grid."""
    columns = 4
    rows = (len(gallery) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3.4 * rows))
    for axis in np.ravel(axes):
        axis.axis("off")
    for axis, (_, overlay, title) in zip(np.ravel(axes), gallery, strict=True):
        axis.imshow(overlay)
        axis.set_title(title, fontsize=8)
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="labelled folder, e.g. the test split")
    parser.add_argument("--limit", type=int, default=200, help="images sampled (seeded)")
    args = parser.parse_args(argv)
    report, gallery = attention_report(args.model, args.data, args.limit)
    plot_gallery(gallery, args.model / "gradcam_examples.png")
    metrics_path = args.model / METRICS_FILENAME
    metrics = json.loads(metrics_path.read_text())
    metrics["attention"] = report
    metrics_path.write_text(json.dumps(metrics, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
