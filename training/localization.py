"""Where the heatmaps land against the radiologists' opacity boxes (RSNA), per explanation method.

    python -m training.localization --model model --data ../shared/data/rsna_pneumonia --split test

Every PNEUMONIA image of the split with boxes gets each method's map of the evidence for PNEUMONIA
(whatever the model decided), scored by cxr_pneumonia.explanation_quality: pointing-game hit rate,
mass ratio inside the boxes, and mIoU of the Otsu-thresholded map. A map peaking at the image centre
is scored beside them as a no-model baseline. Writes a "localization" block into the model's metrics.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from cxr_pneumonia.examples import read_boxes
from cxr_pneumonia.explain import METHODS, Explainer
from cxr_pneumonia.explanation_quality import box_mask, boxes_in_field, centre_map, localization_scores
from cxr_pneumonia.imaging import read_image_file
from cxr_pneumonia.model import PneumoniaModel, load_model_dir
from training.data import LabelledImages, list_labelled_images, test_images, validation_images
from training.metrics_file import store_in_metrics

CENTRE_BASELINE = "centre of the image (no model)"
SPLITS = ("test", "validation", "all")


def images_of_split(model_dir: Path, data_dir: Path, split: str) -> LabelledImages:
    """The data set's held-out test split, the model run's validation images of it, or all its images."""
    if split == "test":
        return test_images(data_dir)
    if split == "validation":
        return validation_images(model_dir).of_source(data_dir.resolve().name)
    return list_labelled_images(data_dir)


def localization_report(model: PneumoniaModel, data_dir: Path, images: LabelledImages, split: str,
                        methods: list[str]) -> dict:
    """Mean scores per method over the pneumonia images with boxes among `images` (the data set's `split`)."""
    explainer = Explainer(model)
    boxes = read_boxes(data_dir)
    cases = [path for path, label in zip(images.paths, images.labels, strict=True)
             if label == 1 and Path(path).name in boxes]
    size = model.config.image_size
    scores: dict[str, list[dict[str, float]]] = {name: [] for name in [*methods, CENTRE_BASELINE]}
    seconds = dict.fromkeys(methods, 0.0)
    for path in cases:
        gray = read_image_file(path)
        model_input, field = model.prepare(gray)
        mask = box_mask(boxes_in_field(boxes[Path(path).name], field.top, field.left), field.width, field.height,
                        size, size)
        for method, timed in explainer.compare(model_input, "PNEUMONIA", methods).items():
            seconds[method] += timed.seconds
            scores[method].append(localization_scores(timed.heatmap, mask))
        scores[CENTRE_BASELINE].append(localization_scores(centre_map(size, size), mask))
    return {
        "data": data_dir.resolve().name, "split": split, "n": len(cases), "gradcam_layer": model.config.gradcam_layer,
        "explained_class": "PNEUMONIA",
        "methods": {name: summarise(rows, seconds.get(name), len(cases)) for name, rows in scores.items()},
    }


def summarise(rows: list[dict[str, float]], seconds: float | None, n: int) -> dict[str, float | None]:
    """Pointing-game hit rate, mean mass ratio and mIoU over cases (NaN-free means), and ms per map."""
    def mean(key: str) -> float:
        values = [row[key] for row in rows if not np.isnan(row[key])]
        return float(np.mean(values)) if values else float("nan")

    return {"hit_rate": mean("hit"), "mass_ratio": mean("mass_ratio"), "miou_otsu": mean("otsu_iou"),
            "ms_per_map": None if seconds is None or not n else 1000 * seconds / n}


def format_localization(report: dict) -> str:
    """The report as a few aligned lines."""
    lines = [f"{report['data']} {report['split']}: {report['n']} pneumonia images with boxes, "
             f"Grad-CAM layer {report['gradcam_layer']}"]
    for name, row in report["methods"].items():
        lines.append(f"{name:32s} hit rate {row['hit_rate']:.3f}  mass ratio {row['mass_ratio']:.2f}  "
                     f"mIoU {row['miou_otsu']:.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="data set with boxes.csv (RSNA)")
    parser.add_argument("--split", choices=SPLITS, default="test")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument("--gradcam-layer", help="explain this layer instead of the model's own")
    parser.add_argument("--no-save", action="store_true", help="print only; leave metrics.json alone")
    args = parser.parse_args(argv)
    model = load_model_dir(args.model)
    if args.gradcam_layer:
        model = model.with_gradcam_layer(args.gradcam_layer)
    images = images_of_split(args.model, args.data, args.split)
    report = localization_report(model, args.data, images, args.split, args.methods)
    print(format_localization(report))
    if not args.no_save and not args.gradcam_layer:
        store_in_metrics(args.model, "localization", report)


if __name__ == "__main__":
    main()
