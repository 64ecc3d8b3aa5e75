"""Training end to end on a handful of real images, and the evaluation command on its output."""

import json
import shutil
from collections import Counter

import keras
import numpy as np
import pytest

from cxr_pneumonia.model import load_model_dir
from tests.conftest import TINY_TRAINING
from training import contrast_check, evaluate, framing_check, report
from training.card import heatmaps_section
from training.data import patient_id, test_images
from training.report import validation_images

EXPECTED_FILES = {"model.keras", "config.json", "metrics.json", "README.md", "roc.png", "confusion_matrix.png",
                  "reliability.png", "training_curves.png", "history.csv"}


def test_training_writes_a_publishable_model_directory(tiny_model_dir):
    assert EXPECTED_FILES <= {path.name for path in tiny_model_dir.iterdir()}
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["labels"] == ["NORMAL", "PNEUMONIA"]
    assert config["image_size"] == 64
    assert 0.0 <= config["threshold"] <= 1.0 and config["temperature"] > 0
    assert {len(digest) for digest in config["data_manifest_sha256"].values()} == {64}  # one per source
    history = (tiny_model_dir / "history.csv").read_text().strip().splitlines()
    assert len(history) == 3  # header + 2 epochs


def test_model_loads_safely_and_keeps_conv_layers_flat(tiny_model_dir):
    model = load_model_dir(tiny_model_dir)
    top_level = {layer.name for layer in model.keras_model.layers}
    assert model.config.gradcam_layer in top_level
    assert not any(isinstance(layer, keras.Model) for layer in model.keras_model.layers)


def test_card_carries_measured_numbers_and_disclaimer(tiny_model_dir):
    card = (tiny_model_dir / "README.md").read_text()
    metrics = json.loads((tiny_model_dir / "metrics.json").read_text())
    assert card.startswith("---\nlicense: cc-by-4.0\nlibrary_name: keras\npipeline_tag: image-classification")
    assert f"value: {metrics['test']['accuracy']:.4f}" in card
    assert "not a medical device" in card
    assert "labels smoothed by 0.1 (a pneumonia trains towards 0.95" in card
    assert "doi:10.17632/rscbjbr9sj.2" in card and "CC BY 4.0" in card
    framing = metrics["framing_check"]
    assert [row["crop_top_and_bottom"] for row in framing] == [0.0, 0.075, 0.125]
    assert "## Framing check" in card and f"| 12.5% | {framing[2]['normal_called_pneumonia']:.3f}" in card


def test_card_says_plainly_where_an_old_model_was_not_measured_against_the_boxes():
    lung_box_only = {"attention": {"n": 50, "mean_heat_share_in_lung_box": 0.8}}  # v1.x: a lung-box proxy
    section = heatmaps_section(lung_box_only)
    assert section.startswith("## Where the heatmaps land\n\n") and "not measured against the radiologists'" in section
    assert "%" not in section and heatmaps_section({}) == ""


def test_validation_split_of_the_run_has_no_training_patient(tiny_model_dir, mini_data_dir):
    validation = validation_images(tiny_model_dir)
    all_train = {p.stem for p in (mini_data_dir / "train").rglob("*.jpg")}
    fitted = all_train - {path.split("/")[-1][:-4] for path in validation.paths}
    assert {patient_id(name) for name in fitted}.isdisjoint(patient_id(p) for p in validation.paths)


def test_evaluate_command_writes_the_report(tiny_model_dir, mini_data_dir, tmp_path, capsys):
    out = tmp_path / "eval.json"
    evaluate.main(["--model", str(tiny_model_dir), "--data", str(mini_data_dir / "test"), "--json", str(out)])
    report = json.loads(out.read_text())
    for key in ("n", "accuracy", "auc", "sensitivity", "specificity", "precision", "f1", "threshold", "ece",
                "confusion_matrix", "ci95", "rejected_fraction"):
        assert key in report
    assert report["n"] == 8
    assert sum(map(sum, report["confusion_matrix"]["rows_true_cols_predicted"])) == 8
    metrics = json.loads((tiny_model_dir / "metrics.json").read_text())
    assert report["accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    assert "accuracy" in capsys.readouterr().out


def test_training_is_deterministic_for_a_seed(tiny_model_dir, mini_data_dir, mini_rsna_dir, tmp_path):
    from training import train

    again = tmp_path / "again"
    train.main(["--data", str(mini_data_dir), str(mini_rsna_dir), "--out", str(again), *TINY_TRAINING, "--skip-report"])
    first = keras.saving.load_model(tiny_model_dir / "model.keras").get_weights()
    second = keras.saving.load_model(again / "model.keras").get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


def test_validation_only_report_calibrates_and_measures_without_reading_a_test_split(
        tiny_model_dir, mini_data_dir, mini_rsna_dir, tmp_path, monkeypatch):
    run = shutil.copytree(tiny_model_dir, tmp_path / "run")
    full_config = json.loads((tiny_model_dir / "config.json").read_text())

    def no_test_split(data_dir):
        raise AssertionError(f"the test split of {data_dir} was read")

    monkeypatch.setattr(report, "test_images", no_test_split)
    report.main(["--model", str(run), "--data", str(mini_data_dir), str(mini_rsna_dir), "--validation-only"])
    config = json.loads((run / "config.json").read_text())
    assert "gate" not in config
    assert config["threshold"] == pytest.approx(full_config["threshold"])
    assert config["temperature"] == pytest.approx(full_config["temperature"])
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics) == {"validation", "validation_by_source", "training", "framing_check", "contrast_check",
                            "localization"}
    validation = validation_images(run)
    for name in (mini_data_dir.name, mini_rsna_dir.name):
        assert metrics["validation_by_source"][name]["n"] == len(validation.of_source(name).paths)
    rsna = validation.of_source(mini_rsna_dir.name)
    assert metrics["localization"]["split"] == "validation"
    assert metrics["localization"]["n"] == sum(rsna.labels)


def test_the_report_predicts_each_image_once(tiny_model_dir, mini_data_dir, mini_rsna_dir, tmp_path, monkeypatch):
    """Reports, pooled reports, plots and the checks' unchanged images all reuse one prediction of each image (the
    calibration's pass, before the gate exists, aside); the checks predict only the images they change."""
    run = shutil.copytree(tiny_model_dir, tmp_path / "run")
    read_as_files, changed_images = Counter(), []

    def counted_batches(model, paths, batches=evaluate.input_batches):
        read_as_files.update(paths)
        return batches(model, paths)

    def counted_grays(model, grays, predict=evaluate.predict_grays):
        changed_images.extend(grays)
        return predict(model, grays)

    monkeypatch.setattr(evaluate, "input_batches", counted_batches)
    monkeypatch.setattr(framing_check, "predict_grays", counted_grays)
    monkeypatch.setattr(contrast_check, "predict_grays", counted_grays)
    report.main(["--model", str(run), "--data", str(mini_data_dir), str(mini_rsna_dir), "--keep-gate"])
    validation = validation_images(run)
    tests = [*test_images(mini_data_dir).paths, *test_images(mini_rsna_dir).paths]
    assert read_as_files == Counter([*validation.paths, *tests])
    first_source = validation.of_source(validation.source_names[0])
    n_crops, n_changes = len(framing_check.DEFAULT_CROPS) - 1, len(contrast_check.CHANGES)
    assert len(changed_images) == n_crops * len(first_source) + n_changes * len(validation)
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["test_by_source"]) == {mini_data_dir.name, mini_rsna_dir.name}
