"""The offline explanation-quality command and the example picker, run on the tiny model and a miniature data
root (children and adults), and the card's per-method table rendered from what the command wrote."""

import csv
import json
import shutil
from pathlib import Path

import pytest

from cxr_pneumonia.examples import read_boxes
from cxr_pneumonia.explain import METHODS
from cxr_pneumonia.sources import SOURCES
from training import explanations, pick_examples
from training.card import LOCALIZATION_ANCHORS, render_card


@pytest.fixture(scope="module")
def data_root(mini_data_dir: Path, mini_rsna_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding the miniature chest_xray and rsna_pneumonia sets under their real names."""
    root = tmp_path_factory.mktemp("data_root")
    (root / "chest_xray").symlink_to(mini_data_dir)
    (root / "rsna_pneumonia").symlink_to(mini_rsna_dir)
    return root


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny model, so writing its metrics.json leaves the shared fixture alone."""
    return Path(shutil.copytree(tiny_model_dir, tmp_path_factory.mktemp("explained") / "model"))


def test_explanations_writes_the_per_method_report_and_the_card_shows_it(model_dir, data_root, capsys):
    explanations.main(["--model", str(model_dir), "--data-root", str(data_root), "--limit", "3"])
    report = json.loads((model_dir / "metrics.json").read_text())["explanations"]
    assert report["localization"]["data"] == "rsna_pneumonia" and report["localization"]["n"] == 2
    assert report["randomisation"]["check_layers"][:2] == ["logit", "last_conv"]
    limit = report["randomisation"]["max_abs_rho"]
    for source in ("rsna_pneumonia", "chest_xray"):
        split = report["splits"][source]
        assert split["n"] == 3 and list(split["methods"]) == list(METHODS)
        for row in split["methods"].values():
            assert row["randomisation_passed"] == (row["randomisation_abs_rho"] < limit)
            assert len(row["cascade_abs_rho"]) == len(report["randomisation"]["cascade"])
            assert 0 <= row["deletion_auc"] <= 1 and 0 <= row["insertion_auc"] <= 1
    assert "deletion AUC" in capsys.readouterr().out
    card = render_card(model_dir)
    table = card[card.index("## How far to trust the heatmaps"):]
    for method in METHODS:
        row = next(line for line in table.splitlines() if line.startswith(f"| {method} |"))
        assert row.count("|") == 8 and ("passed" in row or "**failed**" in row)
    assert LOCALIZATION_ANCHORS in table and "0.50 for airspace opacity" in table


def test_pick_examples_names_children_and_adults_relative_to_the_data_root(tiny_model_dir, data_root, tmp_path):
    out = tmp_path / "manifest.csv"
    pick_examples.main(["--model", str(tiny_model_dir), "--data-root", str(data_root), "--out", str(out)])
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {(row["population"], row["label"]) for row in rows} == {
        (population, label) for population in ("child", "adult") for label in ("NORMAL", "PNEUMONIA")}
    for row in rows:
        assert (data_root / row["path"]).is_file() and row["path"].split("/")[0] in SOURCES
        assert row["note"].split(":")[0] in pick_examples.NOTES
        assert ("CC BY 4.0" in row["provenance"]) == (row["population"] == "child")
        assert ("Shih et al. 2019" in row["provenance"]) == (row["population"] == "adult")
    kinds = [(row["path"].split("/")[0], row["label"], row["note"].split(":")[0]) for row in rows]
    assert len(kinds) == len(set(kinds))
    assert {(source, label) for source, label, kind in kinds if kind == "borderline"} == {
        (source, label) for source, label, _ in kinds}  # every source and class has its borderline case
    boxes = read_boxes(data_root / "rsna_pneumonia")
    assert all(Path(row["path"]).name in boxes for row in rows if row["population"] == "adult"
               and row["label"] == "PNEUMONIA")
