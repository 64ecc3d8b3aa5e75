"""The robustness suite and a leave-one-source-out run, on the tiny model and a handful of real images."""

import json

import pytest

from tests.conftest import TINY_TRAINING
from training import loso, robustness, train


def suite_rows(model_dir, data_dirs, out) -> list[dict]:
    robustness.main(["--model", str(model_dir), "--data", *map(str, data_dirs), "--split", "test",
                     "--changes", "edge_enhancement", "negative", "--severities", "2", "--json", str(out)])
    return json.loads(out.read_text())["rows"]


def test_the_suite_measures_each_change_per_source_and_repeats_exactly(tiny_model_dir, mini_data_dir, mini_rsna_dir,
                                                                       tmp_path):
    rows = suite_rows(tiny_model_dir, [mini_data_dir, mini_rsna_dir], tmp_path / "a.json")
    assert {(row["change"], row["severity"]) for row in rows} == {("none", 0), ("edge_enhancement", 2),
                                                                 ("negative", 2)}
    assert {row["source"] for row in rows} == {mini_data_dir.name, "rsna_pneumonia"}
    for row in rows:
        assert 0.0 <= row["refused"] <= 1.0 and 0.0 <= row["specificity"] <= 1.0
    assert next(r for r in rows if r["change"] == "negative")["held_out_of_training"] is False
    again = suite_rows(tiny_model_dir, [mini_data_dir, mini_rsna_dir], tmp_path / "b.json")
    assert again == rows


def test_a_held_out_source_is_measured_but_never_trained_on(mini_data_dir, mini_rsna_dir, tmp_path):
    out = tmp_path / "loso"
    train.main(["--data", str(mini_data_dir), str(mini_rsna_dir), "--out", str(out), *TINY_TRAINING,
                "--epochs", "1", "--augment", "sites", "--holdout-source", "rsna_pneumonia", "--skip-report"])
    run = json.loads((out / "run.json").read_text())
    assert run["holdout_source"] == "rsna_pneumonia" and run["augment"] == "sites"
    history = (out / "history.csv").read_text().splitlines()[0]
    assert "val_auc_rsna_pneumonia" in history
    entry = loso.measure_run(out, [mini_data_dir, mini_rsna_dir], suite=False)
    assert entry["held_out"] == "rsna_pneumonia" and entry["trained_on"] == [mini_data_dir.name]
    assert entry["n"] > 0 and 0.0 <= entry["specificity"] <= 1.0
    # Calibration and the band were fitted without the held-out source.
    config = json.loads((out / "config.json").read_text())
    assert config["calibrated_prevalence"] == 0.5 and "uncertain_band" in config


def test_an_unknown_held_out_source_is_an_error(mini_data_dir, tmp_path):
    with pytest.raises(ValueError, match="holdout"):
        train.main(["--data", str(mini_data_dir), "--out", str(tmp_path / "x"), *TINY_TRAINING,
                    "--holdout-source", "nowhere", "--skip-report"])
