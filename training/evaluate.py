"""Evaluate a model directory on labelled data, per source and pooled, or measure how many images of a
folder of non-chest-X-rays its input gate refuses.

    python -m training.evaluate --model model --data ../shared/data/chest_xray ../shared/data/rsna_pneumonia
    python -m training.evaluate --model model --data ../shared/data/chest_xray/test --json test.json

Each --data folder is a data set (its test split: Kermany's test/, or the images named in its
training/splits file; --split all takes every image of a data set with a split file) or a plain folder
with NORMAL/ and PNEUMONIA/ inside, taken whole.
    python -m training.evaluate --model model --not-cxr photos/ --json photos.json

On a labelled folder the classification metrics are over ALL images, as if the gate were off (a refused
image still counts with its probability); `rejected_fraction` is the share the gate refused. The app's
"Your data" tab and POST /v1/evaluate score and report through the same functions (cxr_pneumonia.evaluation).
On --not-cxr, every image file under the folder counts (recursively), in all and per subfolder (category);
files whose names say they are not images (README.md, MANIFEST.csv) are skipped; image files the decoder
cannot read count as refused by the decoder and are reported apart from the gate's refusals.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from cxr_pneumonia.config import EVALUATION_BATCH_SIZE, IMAGE_FILE_SUFFIXES
from cxr_pneumonia.evaluation import labelled_report, score_batch
from cxr_pneumonia.imaging import ImageDecodeError
from cxr_pneumonia.model import PneumoniaModel, load_model_dir
from training.data import (
    LabelledImages,
    concatenate,
    has_official_split,
    list_labelled_images,
    test_images,
    test_split_file,
)

BATCH_SIZE = EVALUATION_BATCH_SIZE  # as the app's evaluation batches, so that both compute the same numbers
ALL_FOLDERS = "all"
POOLED = "pooled"
T = TypeVar("T")


def chunks(items: list[T]) -> Iterator[list[T]]:
    """The items in runs of BATCH_SIZE, in order."""
    for start in range(0, len(items), BATCH_SIZE):
        yield items[start : start + BATCH_SIZE]


def input_batches(model: PneumoniaModel, paths: list[str]) -> Iterator[np.ndarray]:
    """Batches of model inputs for image files, read and preprocessed as the app does."""
    for chunk in chunks(paths):
        yield np.stack([model.preprocess_file(p) for p in chunk])


def predict_paths(model: PneumoniaModel, paths: list[str]) -> np.ndarray:
    """Calibrated pneumonia probabilities for image files, through the app's predict path."""
    return np.concatenate([np.zeros(0), *(model.probabilities(batch) for batch in input_batches(model, paths))])


def predict_grays(model: PneumoniaModel, grays: list[np.ndarray]) -> np.ndarray:
    """Calibrated pneumonia probabilities for decoded grayscale images, in batches of BATCH_SIZE."""
    return np.concatenate([np.zeros(0), *(model.probabilities(np.stack([model.preprocess(gray) for gray in chunk]))
                                          for chunk in chunks(grays))])


def predict_and_gate_paths(model: PneumoniaModel, paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated pneumonia probabilities and the input gate's refusals (booleans) for image files."""
    probabilities, refused = [np.zeros(0)], [np.zeros(0, dtype=bool)]
    for batch in input_batches(model, paths):
        batch_probabilities, batch_refused = score_batch(model, batch)
        probabilities.append(batch_probabilities)
        refused.append(batch_refused)
    return np.concatenate(probabilities), np.concatenate(refused)


def evaluate_images(model: PneumoniaModel, images: LabelledImages) -> tuple[dict, np.ndarray]:
    """The metric report at the model's threshold over all images, with the share the gate refused,
    and the per-image probabilities."""
    scored = ScoredImages(images, *predict_and_gate_paths(model, images.paths))
    return scored.report(model), scored.probabilities


def evaluation_images(data_dir: Path, split: str = "test") -> LabelledImages:
    """The labelled images to evaluate on in `data_dir` (see the module docstring)."""
    if has_official_split(data_dir):
        return list_labelled_images(data_dir / "test")
    if test_split_file(data_dir).is_file() and split == "test":
        return test_images(data_dir)
    return list_labelled_images(data_dir)


@dataclass(frozen=True)
class ScoredImages:
    """Labelled images with each one's calibrated pneumonia probability and the input gate's refusal, in order:
    predicted once, then read by every report and plot made of them."""

    images: LabelledImages
    probabilities: np.ndarray
    refused: np.ndarray

    def of_source(self, source: str) -> ScoredImages:
        """The images of one source with their scores."""
        keep = np.array([name == source for name in self.images.sources], dtype=bool)
        return ScoredImages(self.images.of_source(source), self.probabilities[keep], self.refused[keep])

    def report(self, model: PneumoniaModel) -> dict:
        """The metric report at the model's threshold over all images, with the share the gate refused."""
        return labelled_report(model, self.images.labels, self.probabilities, self.refused)


def score_images(model: PneumoniaModel, images: LabelledImages) -> ScoredImages:
    """Every image predicted once, source by source (so each source's batches are those it has alone)."""
    probabilities, refused = np.zeros(len(images)), np.zeros(len(images), dtype=bool)
    sources = np.array(images.sources)
    for source in images.source_names:
        keep = sources == source
        probabilities[keep], refused[keep] = predict_and_gate_paths(model, images.of_source(source).paths)
    return ScoredImages(images, probabilities, refused)


def source_reports(model: PneumoniaModel, scored: ScoredImages) -> dict[str, dict]:
    """The report of each source and, with several, of all images pooled."""
    reports = {source: scored.of_source(source).report(model) for source in scored.images.source_names}
    if len(reports) > 1:
        reports[POOLED] = scored.report(model)
    return reports


def evaluate_sources(model: PneumoniaModel, images: LabelledImages) -> dict[str, dict]:
    """The report of each source and, with several, of all images pooled, each image predicted once."""
    return source_reports(model, score_images(model, images))


def gate_report(model: PneumoniaModel, paths: list[str]) -> dict:
    """How many of the image files the decoder or the input gate refuses (and, of those the gate refused, how
    many each score found unusual: above its base), and what the gate said the refused ones look like."""
    n_unreadable = n_gate = 0
    above = dict.fromkeys(model.gate.rule.bases if model.gate.rule else (), 0)
    told: dict[str, int] = {}
    for start in range(0, len(paths), BATCH_SIZE):
        batch = readable_inputs(model, paths[start : start + BATCH_SIZE])
        n_unreadable += min(BATCH_SIZE, len(paths) - start) - len(batch)
        scores, refused, kinds = model.gate.assess(batch)
        n_gate += int(refused.sum())
        for name, values in scores.items():
            above[name] += int(np.sum(refused & (values > model.gate.rule.bases[name])))
        for kind in np.asarray(kinds, dtype=object)[refused]:
            told[kind or "unknown"] = told.get(kind or "unknown", 0) + 1
    n_readable = len(paths) - n_unreadable
    return {
        "n": len(paths),
        "n_refused_by_decoder": n_unreadable,
        "n_refused_by_gate": n_gate,
        "n_refused_above_base_by_score": above,
        "n_refused_by_kind_told": dict(sorted(told.items())),
        "rejected_fraction": (n_gate + n_unreadable) / len(paths) if paths else 0.0,
        "gate_rejected_fraction_of_readable": n_gate / n_readable if n_readable else 0.0,
        "input_gate": model.gate.present,
    }


def readable_inputs(model: PneumoniaModel, paths: list[str]) -> np.ndarray:
    """The model inputs of the files the decoder can read, stacked; unreadable files are skipped."""
    inputs = []
    for path in paths:
        try:
            inputs.append(model.preprocess_file(path))
        except ImageDecodeError:
            continue
    size = model.config.image_size
    return np.stack(inputs) if inputs else np.zeros((0, size, size, 1), np.float32)


def folder_reports(model: PneumoniaModel, folder: str | Path) -> dict:
    """The gate report of all image files under `folder` and, when it has subfolders, of each (a category),
    with the names of the files skipped as not images."""
    paths = list_files(folder)
    categories: dict[str, list[str]] = {}
    for path in paths:
        relative = Path(path).relative_to(folder)
        if len(relative.parts) > 1:
            categories.setdefault(relative.parts[0], []).append(path)
    reports = {category: gate_report(model, files) for category, files in categories.items()}
    counted = set(paths)
    skipped = sorted(str(path.relative_to(folder)) for path in Path(folder).rglob("*")
                     if path.is_file() and str(path) not in counted)
    return {**gate_report(model, paths), "by_folder": reports, "skipped_not_images": skipped}


def list_files(folder: str | Path) -> list[str]:
    """Every image file under `folder` by its name (IMAGE_FILE_SUFFIXES), recursively, sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    return sorted(str(path) for path in folder.rglob("*")
                  if path.is_file() and path.suffix.lower() in IMAGE_FILE_SUFFIXES and not path.name.startswith("."))


def format_report(report: dict) -> str:
    """A short human-readable summary of a metric report."""
    ci = report["ci95"]
    lines = [f"n = {report['n']} ({report['n_pneumonia']} pneumonia, {report['n_normal']} normal), "
             f"threshold {report['threshold']:.3f}"]
    for key in ("accuracy", "auc", "sensitivity", "specificity", "precision"):
        low, high = ci[key]
        lines.append(f"{key:12s} {report[key]:.4f}  (95% CI {low:.4f}-{high:.4f})")
    lines.append(f"{'f1':12s} {report['f1']:.4f}")
    lines.append(f"{'ece':12s} {report['ece']:.4f}  (balanced {report['balanced_ece']:.4f}, 95% CI "
                 f"{_interval(ci['balanced_ece'])})")
    if report.get("uncertain_band"):
        lines.append(f"uncertain    {report['uncertain_share']:.1%} of images; accuracy of the rest "
                     f"{report['accuracy_outside_band']:.4f}")
    (tn, fp), (fn, tp) = report["confusion_matrix"]["rows_true_cols_predicted"]
    lines.append(f"confusion    true NORMAL: {tn} normal / {fp} pneumonia; "
                 f"true PNEUMONIA: {fn} normal / {tp} pneumonia")
    lines.append(format_rejected(report))
    return "\n".join(lines)


def _interval(values: list[float]) -> str:
    return f"{values[0]:.4f}-{values[1]:.4f}"


def format_folder_reports(report: dict) -> str:
    """One line per subfolder and one for all files of a `folder_reports` report."""
    lines = [f"{name:20s} {format_rejected(folder)}" for name, folder in report["by_folder"].items()]
    lines.append(f"{ALL_FOLDERS:20s} {format_rejected(report)}")
    if report["skipped_not_images"]:
        lines.append(f"skipped, not images by name: {', '.join(report['skipped_not_images'])}")
    return "\n".join(lines)


def format_rejected(report: dict) -> str:
    """The share of images refused, by the decoder and by the input gate (or a note that there is none)."""
    gate = "by the input gate" if report["input_gate"] else "by the input gate (this model has none)"
    if "n_refused_by_decoder" in report:
        return (f"rejected     {report['rejected_fraction']:.4f} of {report['n']} files: "
                f"{report['n_refused_by_decoder']} unreadable, {report['n_refused_by_gate']} {gate}")
    return (f"rejected     {report['rejected_fraction']:.4f} of {report['n']} images {gate}; "
            "metrics above are over all images")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="model directory (model.keras + config.json)")
    folders = parser.add_mutually_exclusive_group(required=True)
    folders.add_argument("--data", type=Path, nargs="+", help="data sets, or folders with NORMAL/ and PNEUMONIA/")
    folders.add_argument("--not-cxr", type=Path, help="folder of images that are not chest X-rays (recursive)")
    parser.add_argument("--split", choices=("test", "all"), default="test",
                        help="for a data set with a split file: its test split, or every image")
    parser.add_argument("--json", type=Path, help="write the report here as JSON")
    args = parser.parse_args(argv)
    model = load_model_dir(args.model)
    if args.not_cxr:
        report = folder_reports(model, args.not_cxr)
        print(format_folder_reports(report))
    else:
        reports = evaluate_sources(model, concatenate([evaluation_images(d, args.split) for d in args.data]))
        for name, source_report in reports.items():
            print(f"{name}\n{format_report(source_report)}")
        report = next(iter(reports.values())) if len(reports) == 1 else reports
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
