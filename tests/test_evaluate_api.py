"""POST /v1/evaluate on a real server (the app as `python app.py` serves it, bundled model), with real X-rays."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from cxr_pneumonia import evaluation
from cxr_pneumonia.config import DEFAULT_DATA_DIR
from cxr_pneumonia.rest import create_rest_api
from tests.labelled_zips import deflate_bomb, labelled_folder, zip_entries, zip_folder
from tests.test_api import served
from tests.test_app import app_with_unreachable_hub
from tests.test_labelled_zip import NORMAL_BYTES, PNEUMONIA_BYTES, peak_rss_growth_mb
from training import evaluate as cli

ZIP = {"Content-Type": "application/zip"}
METRICS = ("auc", "sensitivity", "specificity", "accuracy", "threshold")


@pytest.fixture(scope="module")
def app():
    with app_with_unreachable_hub() as module:
        yield module


@pytest.fixture(scope="module")
def url(app) -> Iterator[str]:
    with served(lambda port: app.create_server("127.0.0.1", port)) as address:
        yield address


@pytest.fixture(scope="module")
def forty(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A folder of 20 NORMAL and 20 PNEUMONIA test X-rays, and the same images zipped."""
    root = tmp_path_factory.mktemp("forty")
    folder = labelled_folder(root / "my_xrays", per_class=20)
    return folder, zip_folder(folder, root / "my_xrays.zip")


def post_zip(url: str, data: bytes, timeout: float = 120) -> httpx.Response:
    return httpx.post(f"{url}/v1/evaluate", content=data, headers=ZIP, timeout=timeout)


def test_metrics_equal_the_command_lines(url, forty, tmp_path: Path):
    folder, archive = forty
    result = post_zip(url, archive.read_bytes()).raise_for_status().json()
    cli.main(["--model", "model", "--data", str(folder), "--json", str(tmp_path / "cli.json")])
    expected = json.loads((tmp_path / "cli.json").read_text())
    (tn, fp), (fn, tp) = expected["confusion_matrix"]["rows_true_cols_predicted"]
    assert result["confusion"] == {"tp": tp, "fp": fp, "tn": tn, "fn": fn}
    assert result["n"] == expected["n"] == 40 and result["n_unreadable"] == 0
    assert {key: result[key] for key in METRICS} == {key: expected[key] for key in METRICS}
    assert result["ci95"] == evaluation.finite(expected["ci95"])  # the API writes an unbounded interval as null
    assert result["n_refused"] == round(expected["rejected_fraction"] * 40)
    assert [row["name"] for row in result["images"]][:2] == ["my_xrays/NORMAL/IM-0001-0001.jpg",
                                                            "my_xrays/NORMAL/IM-0003-0001.jpg"]
    assert {"name", "label", "pneumonia_probability", "refused", "error"} <= set(result["images"][0])
    assert result["roc"]["operating_point"]["tpr"] == result["sensitivity"]
    multipart = httpx.post(f"{url}/v1/evaluate", files={"file": ("x.zip", archive.read_bytes(), "application/zip")},
                           timeout=120).raise_for_status().json()
    assert multipart == result


def test_a_dotdot_entry_is_400(url, tmp_path: Path):
    archive = zip_entries(tmp_path / "x.zip", {"NORMAL/a.jpg": NORMAL_BYTES, "../PNEUMONIA/b.jpg": PNEUMONIA_BYTES})
    response = post_zip(url, archive.read_bytes())
    assert response.status_code == 400 and "unsafe path ('../PNEUMONIA/b.jpg')" in response.json()["error"]


def test_a_deflate_bomb_is_413_quickly_with_memory_bounded(url, tmp_path: Path):
    """300 MB of zeros in a zip of about 300 KB: refused in well under a second, the server's memory (this
    process: uvicorn runs in a thread here) rising by less than 60 MB at its peak."""
    body = deflate_bomb(tmp_path / "bomb.zip").read_bytes()
    assert len(body) < 1_000_000
    answers = []

    def send() -> None:
        started = time.perf_counter()
        answers.append((post_zip(url, body), time.perf_counter() - started))

    growth = peak_rss_growth_mb(send)
    response, seconds = answers[0]
    assert response.status_code == 413 and "each image may be at most 50 MiB" in response.json()["error"]
    assert seconds < 2 and growth < 60, (seconds, growth)


def test_only_normal_images_answer_specificity_and_say_why_there_is_no_auc(url, tmp_path: Path):
    folder = tmp_path / "normals"
    for index, image in enumerate(sorted((DEFAULT_DATA_DIR / "test" / "NORMAL").iterdir())[:6]):
        (folder / "NORMAL").mkdir(parents=True, exist_ok=True)
        (folder / "NORMAL" / f"{index}.jpg").symlink_to(image)
    (folder / "PNEUMONIA").mkdir()
    result = post_zip(url, zip_folder(folder, tmp_path / "n.zip").read_bytes()).raise_for_status().json()
    assert result["n"] == 6 and 0 <= result["specificity"] <= 1 and result["ci95"]["specificity"][0] is not None
    assert result["auc"] is None and result["sensitivity"] is None and result["roc"] is None
    assert "the AUC and the ROC curve need images of both classes" in result["notes"][0]
    assert result["confusion"]["tn"] + result["confusion"]["fp"] == 6


def test_unreadable_entries_are_listed_not_fatal(url, tmp_path: Path):
    archive = zip_entries(tmp_path / "x.zip", {
        "NORMAL/good.jpg": NORMAL_BYTES, "PNEUMONIA/good.jpg": PNEUMONIA_BYTES,
        "NORMAL/notes.jpg": b"this is a note, not an X-ray", "PNEUMONIA/cut.jpg": PNEUMONIA_BYTES[:3000],
    })
    result = post_zip(url, archive.read_bytes()).raise_for_status().json()
    assert result["n"] == 2 and result["n_unreadable"] == 2 and result["auc"] == 1.0
    errors = {row["name"]: row["error"] for row in result["images"] if row["error"]}
    assert "a text file, not an image" in errors["NORMAL/notes.jpg"]
    assert "damaged or incomplete" in errors["PNEUMONIA/cut.jpg"]


def test_a_zip_without_labels_says_what_is_missing(url, tmp_path: Path):
    archive = zip_entries(tmp_path / "x.zip", {"scans/a.jpg": NORMAL_BYTES})
    response = post_zip(url, archive.read_bytes())
    assert response.status_code == 400
    assert "1 image(s) without a label" in response.json()["error"] and "labels.csv" in response.json()["error"]


def test_single_images_are_served_between_the_batches_of_an_evaluation(app, tmp_path: Path, monkeypatch):
    """One model thread: an evaluation of 160 images (5 batches) is running; /classify requests sent meanwhile
    are each answered within about one batch's time, long before the evaluation ends (interleaved)."""
    folder = labelled_folder(tmp_path / "set", per_class=80, offset=20)
    body = zip_folder(folder, tmp_path / "set.zip").read_bytes()
    batches, batch_seconds = [], []
    score = evaluation.score_read

    def timed_batch(model, images, read):
        started = time.perf_counter()
        batches.append(started)
        try:
            return score(model, images, read)
        finally:
            batch_seconds.append(time.perf_counter() - started)

    monkeypatch.setattr(evaluation, "score_read", timed_batch)
    image = NORMAL_BYTES
    with ThreadPoolExecutor(1, thread_name_prefix="model") as workers, served(
            lambda _: create_rest_api(app.service, workers)) as api, ThreadPoolExecutor(1) as client:
        httpx.post(f"{api}/classify", content=image, timeout=60).raise_for_status()  # warm
        running = client.submit(lambda: (httpx.post(f"{api}/evaluate", content=body, headers=ZIP, timeout=300),
                                         time.perf_counter()))
        while not batches:
            time.sleep(0.01)
        latencies = []
        for _ in range(3):
            started = time.perf_counter()
            httpx.post(f"{api}/classify", content=image, timeout=60).raise_for_status()
            latencies.append(time.perf_counter() - started)
        classified_at = time.perf_counter()
        response, evaluated_at = running.result()
    assert response.status_code == 200 and response.json()["n"] == 160 and len(batch_seconds) == 5
    assert classified_at < evaluated_at - max(batch_seconds), "the single images waited for the whole evaluation"
    assert max(latencies) < 2 * max(batch_seconds) + 1.0, (latencies, batch_seconds)


def test_uncertain_answers_are_counted(app, url, forty, monkeypatch):
    """A model with an uncertain band: its answers inside the band are UNCERTAIN, counted apart; the metrics
    still take the decision at the threshold."""
    from dataclasses import replace

    model = app.service.default.model
    monkeypatch.setattr(model, "config", replace(model.config, uncertain_band=(0.05, 0.95)))
    result = post_zip(url, forty[1].read_bytes()).raise_for_status().json()
    uncertain = [row for row in result["images"] if row["answer"] == "UNCERTAIN"]
    assert uncertain and result["n_uncertain"] == len(uncertain)
    assert all(0.05 <= row["pneumonia_probability"] < 0.95 and row["uncertain"] for row in uncertain)
    assert all(row["predicted"] in ("NORMAL", "PNEUMONIA") for row in result["images"])


