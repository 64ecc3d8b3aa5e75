"""The library's evaluation of a labelled zip, on real X-rays with the bundled model: DICOM entries, labels.csv,
another threshold, the CSV, and the same numbers as training.evaluate."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr_pneumonia.config import REPO_ROOT
from cxr_pneumonia.evaluation import CSV_COLUMNS, evaluate_archive, finite
from cxr_pneumonia.imaging import decode_image
from cxr_pneumonia.labelled_zip import open_labelled_zip
from cxr_pneumonia.model import PneumoniaModel, load_model_dir
from tests.dicom_files import dicom
from tests.labelled_zips import labelled_folder, zip_entries
from tests.test_labelled_zip import NORMAL_BYTES, PNEUMONIA_BYTES
from training import evaluate as cli
from training.data import list_labelled_images


@pytest.fixture(scope="module")
def model() -> PneumoniaModel:
    return load_model_dir(REPO_ROOT / "model")


def as_dicom(jpeg: bytes) -> bytes:
    """A real X-ray as a 16-bit DICOM file (no suffix, as DICOM files often come)."""
    pixels = np.asarray(Image.open(io.BytesIO(jpeg)).convert("L"), dtype=np.uint16) * 257
    return dicom(pixels)


def test_dicom_and_jpeg_entries_give_the_same_probability(model, tmp_path: Path):
    source = zip_entries(tmp_path / "x.zip", {"PNEUMONIA/a.jpg": PNEUMONIA_BYTES,
                                              "PNEUMONIA/a_as_dicom": as_dicom(PNEUMONIA_BYTES),
                                              "NORMAL/b.jpg": NORMAL_BYTES})
    assert decode_image(as_dicom(PNEUMONIA_BYTES), "a_as_dicom").shape == decode_image(PNEUMONIA_BYTES).shape
    with open_labelled_zip(source) as archive:
        result = evaluate_archive(model, archive)
    jpeg, dicom_row, _ = result.images
    assert dicom_row.error is None and dicom_row.probability == pytest.approx(jpeg.probability, abs=0.02)
    assert result.counts == {"n": 3, "n_refused": 0, "n_unreadable": 0, "n_uncertain": 0}


def test_labels_csv_layout_matches_training_evaluate(model, tmp_path: Path):
    folder = labelled_folder(tmp_path / "set", per_class=6)
    images = list_labelled_images(folder)
    entries = {f"export/{Path(path).name}": Path(path).read_bytes() for path in images.paths}
    rows = "".join(f"{Path(path).name},{'PNEUMONIA' if label else 'NORMAL'}\n"
                   for path, label in zip(images.paths, images.labels, strict=True))
    source = zip_entries(tmp_path / "x.zip", {"export/labels.csv": f"filename,label\n{rows}".encode(), **entries})
    with open_labelled_zip(source) as archive:
        result = evaluate_archive(model, archive)
    expected, probabilities = cli.evaluate_images(model, images)
    # NaN (an AUC interval a perfect ranking cannot bound) equals nothing, itself included: compare it as null
    assert result.layout == "labels.csv" and finite(result.report) == finite(expected)
    assert [image.probability for image in result.images] == probabilities.tolist()


def test_another_threshold_only_shows(model, tmp_path: Path):
    folder = labelled_folder(tmp_path / "set", per_class=5)
    source = zip_entries(tmp_path / "x.zip", {f"{label}/{path.name}": path.read_bytes()
                                              for label in ("NORMAL", "PNEUMONIA")
                                              for path in sorted((folder / label).iterdir())})
    with open_labelled_zip(source) as archive:
        result = evaluate_archive(model, archive)
    everything = result.at_threshold(0.0)
    assert everything["sensitivity"] == 1.0 and everything["specificity"] == 0.0
    at_model = result.at_threshold(result.threshold)
    assert at_model["sensitivity"] == result.report["sensitivity"] and result.threshold == model.config.threshold
    table = list(csv.DictReader(io.StringIO(result.csv_text())))
    assert tuple(table[0]) == CSV_COLUMNS and len(table) == 10
    assert [row["predicted"] for row in table] == [image.predicted for image in result.images]
    errors = result.errors()
    assert [image.wrong_confidence for image in errors] == sorted((image.wrong_confidence for image in errors),
                                                                  reverse=True)


@pytest.mark.parametrize("with_gate", [True, False], ids=["with its input gate", "a model without one"])
def test_one_pass_scores_as_the_model_and_its_gate_do(model, with_gate):
    """score_batch's single pass equals the model's probabilities and the gate's refusals, with or without a gate
    (a model without one, as training.report --validation-only measures, refuses nothing)."""
    from dataclasses import replace

    from cxr_pneumonia.evaluation import score_batch

    if not with_gate:
        model = PneumoniaModel(model.keras_model, replace(model.config, gate=None))
    batch = np.stack([model.preprocess(decode_image(data)) for data in (NORMAL_BYTES, PNEUMONIA_BYTES)] * 4)
    probabilities, refused = score_batch(model, batch)
    assert probabilities.shape == (8,) and probabilities.tolist() == pytest.approx(model.probabilities(batch).tolist())
    assert refused.tolist() == model.gate.refused(batch).tolist() and (with_gate or not refused.any())
