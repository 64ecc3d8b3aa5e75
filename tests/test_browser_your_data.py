"""The "Your data" tab end to end: the real app in a subprocess, a zip of 40 real X-rays uploaded through Debian's
Chromium, the results read off the page and the CSV downloaded, against `python -m training.evaluate`."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests import test_browser
from tests.labelled_zips import labelled_folder, zip_entries, zip_folder
from tests.test_browser import ANSWERED, UI_MS
from training import evaluate as cli

app, browser, desktop = test_browser.app, test_browser.browser, test_browser.desktop  # the app and tab fixtures

EVALUATION_MS = 120_000  # 40 images, the first batch building the graph, on a busy 2-core machine


@pytest.fixture(scope="module")
def forty(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """20 NORMAL and 20 PNEUMONIA test X-rays as a folder and as a zip, and the command line's report on them."""
    root = tmp_path_factory.mktemp("forty")
    folder = labelled_folder(root / "ward_b", per_class=20)
    cli.main(["--model", "model", "--data", str(folder), "--json", str(root / "cli.json")])
    return folder, zip_folder(folder, root / "ward_b.zip"), json.loads((root / "cli.json").read_text())


def open_tab_and_upload(page: Page, archive: Path) -> None:
    page.get_by_role("tab", name="Your data").click()
    page.locator("#your-data-zip input[type=file]").set_input_files(archive, timeout=UI_MS)
    expect(page.locator("#your-data-zip a").first).to_have_attribute(  # uploaded: the server holds it
        "href", re.compile(rf"/gradio_api/file=.*{re.escape(archive.name)}$"), timeout=UI_MS)


def test_a_zip_of_forty_xrays_gives_the_command_lines_counts(desktop: Page, forty, tmp_path: Path) -> None:
    """Progress bar, then the confusion matrix and the ROC plot; the CSV's counts equal training.evaluate's."""
    _, archive, expected = forty
    open_tab_and_upload(desktop, archive)
    desktop.locator("#your-data-evaluate").click()
    expect(desktop.get_by_role("progressbar").first).to_be_visible(timeout=EVALUATION_MS)
    summary = desktop.locator("#your-data-summary")
    expect(summary).to_contain_text("40 images of ward_b.zip evaluated", timeout=EVALUATION_MS)
    expect(desktop.locator("#your-data-zip")).to_contain_text("ward_b")  # the box keeps the zip for "Fit"
    for plot in ("#your-data-confusion", "#your-data-roc", "#your-data-reliability"):
        image = desktop.locator(f"{plot} img")
        expect(image).to_have_js_property("complete", True, timeout=UI_MS)
        assert image.evaluate("img => img.naturalWidth") > 0, f"{plot} did not render"
    for key in ("accuracy", "sensitivity", "specificity", "auc"):
        expect(summary).to_contain_text(f"{expected[key]:.3f}")

    (tn, fp), (fn, tp) = expected["confusion_matrix"]["rows_true_cols_predicted"]
    expect(desktop.locator("#your-data-at-threshold")).to_contain_text(
        f"({tp} of {tp + fn} pneumonias found) and specificity")
    with desktop.expect_download(timeout=UI_MS) as download:
        desktop.locator("#your-data-csv").click()
    target = tmp_path / "results.csv"
    download.value.save_as(target)
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert len(rows) == expected["n"] == 40
    counted = {"tp": 0, "fp": 0, "tn": 0, "fn": 0}
    for row in rows:
        right = "t" if row["predicted"] == row["label"] else "f"
        counted[right + ("p" if row["predicted"] == "PNEUMONIA" else "n")] += 1
    assert counted == {"tp": tp, "fp": fp, "tn": tn, "fn": fn}
    assert set(rows[0]) >= {"file", "label", "probability", "answer", "refused", "error"}

    errors = desktop.locator("#your-data-errors img")
    if fp + fn:
        expect(errors).to_have_count(min(fp + fn, 12), timeout=UI_MS)
        errors.first.click()
        expect(desktop.locator("#your-data-error-decision")).to_contain_text(ANSWERED, timeout=UI_MS)
    desktop.locator("#your-data-threshold input[type=number]").fill("0.1")
    desktop.locator("#your-data-threshold input[type=number]").press("Enter")
    expect(desktop.locator("#your-data-at-threshold")).to_contain_text("At threshold 0.10", timeout=UI_MS)
    expect(desktop.locator("body")).not_to_contain_text("Traceback")


def test_a_zip_with_an_unsafe_path_gets_a_message(desktop: Page, tmp_path: Path) -> None:
    archive = zip_entries(tmp_path / "bad.zip", {"../NORMAL/a.jpg": b"x"})
    open_tab_and_upload(desktop, archive)
    desktop.locator("#your-data-evaluate").click()
    expect(desktop.get_by_test_id("toast-body")).to_contain_text(re.compile("unsafe path"), timeout=UI_MS)
    expect(desktop.locator("body")).not_to_contain_text("Traceback")
