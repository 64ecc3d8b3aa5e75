"""The model measured on labelled images: batched prediction through the app's preprocessing and model, the
metrics training.evaluate reports (one function for both), and what the "Your data" tab and POST /v1/evaluate
show: confusion at the threshold, ROC points, reliability bins, another threshold's sensitivity and specificity,
per-image rows and their CSV.

As in training.evaluate, the metrics are over every image read, as if the input gate were off (an image it
refuses still counts with its probability); the share it refused is reported beside them.
"""

from __future__ import annotations

import csv
import functools
import io
import math
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import keras
import numpy as np
import tensorflow as tf

from cxr_pneumonia.config import EVALUATION_BATCH_SIZE, LABELS, POSITIVE_LABEL, UNCERTAIN
from cxr_pneumonia.gate import InputGate
from cxr_pneumonia.imaging import ImageDecodeError
from cxr_pneumonia.labelled_zip import (
    IGNORED_REASONS,
    ArchiveError,
    ArchiveImage,
    LabelledArchive,
    missing_labels_error,
)
from cxr_pneumonia.metrics import (
    binary_report,
    confusion,
    reliability_bins,
    risk_coverage,
    roc_curve,
    uncertain_report,
)
from cxr_pneumonia.model import PneumoniaModel, answer, calibrated_probability

T = TypeVar("T")
Submit = Callable[[Callable[[], T]], Future[T]]  # runs one batch's scoring, e.g. on the model threads
Progress = Callable[[int, int], None]  # (images done, images in all)
CSV_COLUMNS = ("file", "label", "probability", "predicted", "answer", "uncertain", "refused", "error")
RELIABILITY_BINS = 10


def submit_here(task: Callable[[], T]) -> Future[T]:
    """Run a batch's scoring in the calling thread (the command line's and the tests' way), as a done future."""
    future: Future[T] = Future()
    future.set_result(task())
    return future


def on_executor(workers: Executor) -> Submit:
    """Score each batch as its own task on `workers` (the model threads): one at a time, so an evaluation holds at
    most one thread, and each queued behind the requests already waiting (the pool takes tasks in order)."""
    return workers.submit


def batch_scorer(model: PneumoniaModel) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]:
    """A compiled pass giving a batch's pneumonia logits and, with an input gate, the gate's outputs: the network
    runs once for both (the explainer's Grad-CAM pass does the same for one image). One per network, whatever
    threshold a copy of the model decides at."""
    if not model.gate.present:
        return lambda batch: (model.logits(batch), None)
    return _compiled_scorer(model.inference_model, model.gate, model.config.image_size)


@functools.cache
def _compiled_scorer(network: keras.Model, gate: InputGate, size: int
                     ) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    extractor = keras.Model(network.inputs, [network.outputs[0], gate.outputs(network)])
    compiled = tf.function(lambda batch: extractor(batch, training=False),
                           input_signature=[tf.TensorSpec((None, size, size, 1), tf.float32)]).get_concrete_function()

    def score(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, gate_outputs = compiled(tf.convert_to_tensor(batch, tf.float32))
        return logits.numpy().reshape(-1), gate_outputs.numpy()

    return score


def score_batch(model: PneumoniaModel, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated pneumonia probabilities and the input gate's refusals (booleans) of a batch of model inputs."""
    logits, gate_outputs = batch_scorer(model)(batch)
    probabilities = calibrated_probability(logits, model.config.temperature, model.config.logit_offset)
    return probabilities, model.gate.refused(batch, gate_outputs)


def labelled_report(model: PneumoniaModel, labels: np.ndarray, probabilities: np.ndarray,
                    refused: np.ndarray) -> dict:
    """The metric report at the model's threshold over all images, with the UNCERTAIN share, the risk-coverage
    curve and the share the input gate refused."""
    threshold = model.config.threshold
    report = binary_report(labels, probabilities, threshold)
    report |= uncertain_report(labels, probabilities, threshold, model.config.uncertain_band)
    report["risk_coverage"] = risk_coverage(labels, probabilities, threshold)
    report["rejected_fraction"] = float(np.mean(refused)) if len(refused) else 0.0
    report["input_gate"] = model.gate.present
    return report


@dataclass(frozen=True)
class Unread:
    """Why a labelled file could not be read: `message` in English (the CSV's and the REST API's), and the `code` and
    `values` of the decoder's refusal (ImageDecodeError, when `decoder`) or of the zip's (ArchiveError), so that a page
    can say it in another language. Plain data: an evaluation keeps no exception (nor its traceback's frames)."""

    message: str
    code: str
    values: Mapping[str, object] = field(default_factory=dict)
    decoder: bool = True

    @classmethod
    def of(cls, error: ImageDecodeError | ArchiveError) -> Unread:
        return cls(str(error), error.code, dict(error.values), isinstance(error, ImageDecodeError))


@dataclass(frozen=True)
class ImageResult:
    """One labelled file: its probability, decision and three-way answer, or why it could not be read."""

    name: str
    label: str
    probability: float | None = None
    predicted: str | None = None
    answer: str | None = None
    refused: bool | None = None
    unread: Unread | None = None

    @property
    def error(self) -> str | None:
        """Why the file could not be read, in English; None when it was."""
        return None if self.unread is None else self.unread.message

    @property
    def wrong(self) -> bool:
        return self.predicted is not None and self.predicted != self.label

    @property
    def wrong_confidence(self) -> float:
        """The probability the model gave its wrong decision (the gallery's order)."""
        return self.probability if self.predicted == POSITIVE_LABEL else 1.0 - self.probability

    @property
    def uncertain(self) -> bool | None:
        """True for an UNCERTAIN answer (inside the model's uncertain band); None when the file was not read."""
        return None if self.answer is None else self.answer == UNCERTAIN

    def as_json(self) -> dict[str, Any]:
        """The row of POST /v1/evaluate's "images"."""
        return {"name": self.name, "label": self.label, "pneumonia_probability": self.probability,
                "predicted": self.predicted, "answer": self.answer, "uncertain": self.uncertain,
                "refused": self.refused, "error": self.error}


Read = list[np.ndarray | Unread]  # per image of a batch: its model input, or why it could not be read


def read_batch(model: PneumoniaModel, images: Sequence[ArchiveImage]) -> Read:
    """Each extracted image read and preprocessed as the app does, or the reason it could not be."""
    read: Read = []
    for image in images:
        if image.reason is not None:  # not read out of the zip
            read.append(Unread.of(image.reason))
            continue
        try:
            read.append(model.preprocess_file(image.path))
        except ImageDecodeError as error:
            read.append(Unread.of(error))
    return read


def score_read(model: PneumoniaModel, images: Sequence[ArchiveImage], read: Read) -> list[ImageResult]:
    """Each image's result: scored when it was read, else its reason."""
    readable = [index for index, item in enumerate(read) if not isinstance(item, Unread)]
    results = {index: ImageResult(images[index].name, images[index].label, unread=item)
               for index, item in enumerate(read) if isinstance(item, Unread)}
    if readable:
        probabilities, refused = score_batch(model, np.stack([read[index] for index in readable]))
        config = model.config
        for index, probability, flag in zip(readable, probabilities.tolist(), refused.tolist(), strict=True):
            results[index] = ImageResult(
                images[index].name, images[index].label, probability,
                POSITIVE_LABEL if probability >= config.threshold else LABELS[0],
                answer(probability, config.threshold, config.uncertain_band), bool(flag))
    return [results[index] for index in range(len(images))]


def evaluate_images(model: PneumoniaModel, images: Sequence[ArchiveImage], submit: Submit = submit_here,
                    progress: Progress | None = None, batch_size: int = EVALUATION_BATCH_SIZE) -> list[ImageResult]:
    """Every image's result. Batches are read in this thread while the one before is scored through `submit`
    (the model threads hold nothing but the network's pass); `progress` hears after each batch."""
    batches = [images[start : start + batch_size] for start in range(0, len(images), batch_size)]
    results: list[ImageResult] = []
    read = read_batch(model, batches[0]) if batches else []
    for index, batch in enumerate(batches):
        scoring = submit(lambda batch=batch, read=read: score_read(model, batch, read))
        read = read_batch(model, batches[index + 1]) if index + 1 < len(batches) else []
        results += scoring.result()
        if progress is not None:
            progress(len(results), len(images))
    return results


def evaluate_archive(model: PneumoniaModel, archive: LabelledArchive, submit: Submit = submit_here,
                     progress: Progress | None = None) -> Evaluation:
    """The evaluation of an opened zip's labelled images; ArchiveError (400) when it has none."""
    if not archive.images:
        raise missing_labels_error(archive)
    results = evaluate_images(model, archive.images, submit, progress)
    return Evaluation.of(model, results, archive.unlabelled, archive.ignored, archive.layout)


def csv_flag(value: bool | None) -> str:
    """true, false, or empty for a file that was not read."""
    return "" if value is None else str(value).lower()


def finite(value: Any) -> Any:
    """NaN as None (JSON's null), recursively through lists and dicts."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    return value


@dataclass(frozen=True)
class Evaluation:
    """The results of one labelled set: per-image rows, the metric report (None when no image could be read)
    and what was left out (`ignored`: entry names with the code of why, a key of IGNORED_REASONS)."""

    images: list[ImageResult]
    threshold: float
    report: dict | None
    input_gate: bool
    unlabelled: list[str] = field(default_factory=list)
    ignored: list[tuple[str, str]] = field(default_factory=list)
    layout: str = "folders"

    @classmethod
    def of(cls, model: PneumoniaModel, images: list[ImageResult], unlabelled: Sequence[str] = (),
           ignored: Sequence[tuple[str, str]] = (), layout: str = "folders") -> Evaluation:
        read = [image for image in images if image.probability is not None]
        report = None
        if read:
            labels = np.array([image.label == POSITIVE_LABEL for image in read], dtype=int)
            report = labelled_report(model, labels, np.array([image.probability for image in read]),
                                     np.array([image.refused for image in read]))
        return cls(list(images), model.config.threshold, report, model.gate.present, list(unlabelled),
                   list(ignored), layout)

    @property
    def read(self) -> list[ImageResult]:
        """The images that were read and scored: the metrics are over these."""
        return [image for image in self.images if image.probability is not None]

    @property
    def labels(self) -> np.ndarray:
        return np.array([image.label == POSITIVE_LABEL for image in self.read], dtype=int)

    @property
    def probabilities(self) -> np.ndarray:
        return np.array([image.probability for image in self.read], dtype=np.float64)

    @property
    def unreadable(self) -> list[ImageResult]:
        return [image for image in self.images if image.unread is not None]

    @property
    def counts(self) -> dict[str, int]:
        """n (images read), n_refused (by the input gate), n_unreadable and n_uncertain."""
        read = self.read
        return {"n": len(read), "n_refused": sum(bool(image.refused) for image in read),
                "n_unreadable": len(self.unreadable), "n_uncertain": sum(image.answer == UNCERTAIN for image in read)}

    @property
    def notes(self) -> list[str]:
        """What cannot be measured on these images, and why."""
        labels = self.labels
        if not len(labels):
            return ["No image could be read, so nothing can be measured: see the reasons beside each file."]
        if labels.all() or not labels.any():
            present, missing = (POSITIVE_LABEL, LABELS[0]) if labels.all() else (LABELS[0], POSITIVE_LABEL)
            measured = "sensitivity" if present == POSITIVE_LABEL else "specificity"
            unmeasured = "specificity" if present == POSITIVE_LABEL else "sensitivity"
            return [f"Only {present} images were read: the AUC and the ROC curve need images of both classes, and "
                    f"{unmeasured} needs {missing} images. Accuracy and {measured} are shown."]
        return []

    def at_threshold(self, threshold: float) -> dict[str, float | None]:
        """Sensitivity and specificity these images would give at another threshold (the model is unchanged)."""
        counts = confusion(self.labels, self.probabilities >= threshold)
        positives, negatives = counts["tp"] + counts["fn"], counts["tn"] + counts["fp"]
        return {"threshold": float(threshold), **counts,
                "sensitivity": counts["tp"] / positives if positives else None,
                "specificity": counts["tn"] / negatives if negatives else None}

    def roc(self) -> dict[str, Any] | None:
        """The ROC curve's points and the model's operating point, or None without both classes."""
        labels = self.labels
        if not len(labels) or labels.all() or not labels.any():
            return None
        fpr, tpr, thresholds = roc_curve(labels, self.probabilities)
        point = self.at_threshold(self.threshold)
        return {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": [None, *thresholds[1:].tolist()],
                "operating_point": {"fpr": 1.0 - point["specificity"], "tpr": point["sensitivity"]}}

    def reliability(self, bins: int = RELIABILITY_BINS) -> dict[str, list]:
        """Mean predicted probability, observed pneumonia frequency and count of each non-empty bin."""
        centres, observed, counts = reliability_bins(self.labels, self.probabilities, bins)
        return {"predicted": [float(x) for x in centres], "observed": [float(y) for y in observed], "count": counts}

    def errors(self) -> list[ImageResult]:
        """The images decided wrongly at the threshold, the most confident first."""
        return sorted((image for image in self.read if image.wrong), key=lambda image: -image.wrong_confidence)

    def metrics(self) -> dict[str, Any]:
        """The headline metrics, their 95 % intervals and the confusion counts (null where not measurable)."""
        report = self.report or {}
        (tn, fp), (fn, tp) = report.get("confusion_matrix", {}).get("rows_true_cols_predicted", [[0, 0], [0, 0]])
        return finite({key: report.get(key) for key in ("auc", "sensitivity", "specificity", "accuracy")}
                      | {"threshold": self.threshold, "ci95": report.get("ci95"),
                         "confusion": {"tp": tp, "fp": fp, "tn": tn, "fn": fn}})

    def as_json(self) -> dict[str, Any]:
        """What POST /v1/evaluate answers."""
        return {**self.counts, **self.metrics(), "notes": self.notes, "layout": self.layout,
                "input_gate": self.input_gate, "roc": self.roc(), "reliability": self.reliability(),
                "unlabelled": self.unlabelled, "ignored": [{"name": name, "reason": IGNORED_REASONS[code]}
                                                          for name, code in self.ignored],
                "images": [image.as_json() for image in self.images]}

    def csv_text(self) -> str:
        """The per-image results as CSV, one row per labelled file."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        for image in self.images:
            writer.writerow([image.name, image.label, "" if image.probability is None else f"{image.probability:.6f}",
                             image.predicted or "", image.answer or "", csv_flag(image.uncertain),
                             csv_flag(image.refused), image.error or ""])
        return buffer.getvalue()


def error_paths(archive: LabelledArchive, evaluation: Evaluation, limit: int) -> list[tuple[ImageResult, Path]]:
    """The `limit` most confident errors with their extracted files, for their full analyses."""
    paths = {image.name: image.path for image in archive.images if image.path is not None}
    return [(image, paths[image.name]) for image in evaluation.errors()[:limit]]
