"""The Gradio app in-process, through gradio_client: predictions, model info, bad uploads, the example
thumbnails and the explanation lab."""

import importlib
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from huggingface_hub import constants
from matplotlib.figure import Figure
from PIL import Image

from cxr_pneumonia.config import DATA_ROOT
from cxr_pneumonia.explain import METHODS
from tests.dicom_files import dicom


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# What HubSettings.from_environment and huggingface_hub read: a shell's settings must not reach these tests.
HUB_VARIABLES = ("HF_ENDPOINT", "HF_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE",
                 "MODEL_REPO", "MODEL_REVISION")


@contextmanager
def app_with_unreachable_hub(examples_dir: Path = DATA_ROOT) -> Iterator[ModuleType]:
    """The app module imported afresh with an unreachable Hub, online, whatever the shell's HF_* variables say,
    its examples read from `examples_dir` (the data root the manifest's paths start from)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in HUB_VARIABLES:
            patch.delenv(name, raising=False)
        patch.setattr(constants, "HF_HUB_OFFLINE", False)  # huggingface_hub read the shell's value on import
        patch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
        patch.setenv("MODEL_REPO", "someone/unreachable-model")
        patch.setenv("EXAMPLES_DIR", str(examples_dir))
        sys.modules.pop("app", None)
        yield importlib.import_module("app")


@pytest.fixture(scope="module")
def app():
    """The app module imported with an unreachable Hub."""
    with app_with_unreachable_hub() as module:
        yield module


@pytest.fixture(scope="module")
def client(app):
    """The app launched on 127.0.0.1."""
    _, url, _ = app.demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=closed_port(),
                                allowed_paths=[str(DATA_ROOT)], quiet=True)
    yield Client(url, verbose=False)
    app.demo.close()


def predict(client: Client, image=None, upload=None, method="Grad-CAM"):
    return client.predict(image and handle_file(str(image)), upload and handle_file(str(upload)), method, 0.4,
                          "main", api_name="/predict")


def test_predict_returns_probabilities_and_heatmap(client, data_dir):
    image = data_dir / "test" / "PNEUMONIA" / "person100_bacteria_475.jpg"
    label, decision, original, heatmap, panel, result = predict(client, image)
    confidences = {item["label"]: item["confidence"] for item in label["confidences"]}
    assert set(confidences) == {"PNEUMONIA", "NORMAL"}
    assert sum(confidences.values()) == pytest.approx(1.0)
    assert result["pneumonia_probability"] == pytest.approx(confidences["PNEUMONIA"])
    assert result["gate_passed"] and result["label"] in confidences
    assert "pneumonia probability" in decision and "not a diagnosis" in decision
    heat = np.asarray(Image.open(heatmap))
    assert heat.ndim == 3 and heat.shape[:2] == np.asarray(Image.open(original)).shape[:2]
    assert "bundled" in panel


def test_predict_needs_only_the_image(client, data_dir):
    """Every input after the image has a default: no file, Grad-CAM, opacity 0.4, the configured version."""
    label, decision, _, heatmap, panel, result = client.predict(
        handle_file(str(data_dir / "test" / "NORMAL" / "IM-0001-0001.jpg")), api_name="/predict")
    assert len(label["confidences"]) == 2 and heatmap is not None
    assert "Heatmap: Grad-CAM" in decision and "bundled" in panel and result["gate_passed"]


def test_model_info_says_the_bundled_model_is_used_when_the_hub_is_unreachable(client):
    info = client.predict(api_name="/model_info")
    assert info["source"] == "bundled" and info["repo_id"] == "someone/unreachable-model"
    assert "could not be reached" in info["fallback_reason"]
    assert set(info["metrics"]) >= {"accuracy", "auc", "sensitivity", "specificity"}


@pytest.mark.parametrize("method", ["Grad-CAM++", "Layer-CAM"])
def test_other_explanation_methods(client, data_dir, method):
    _, decision, _, heatmap, _, _ = predict(client, data_dir / "test" / "NORMAL" / "IM-0001-0001.jpg", method=method)
    assert method in decision and Image.open(heatmap).size[0] > 0


def test_dicom_through_the_file_input(client, tmp_path, data_dir):
    gray = Image.open(data_dir / "test" / "NORMAL" / "IM-0001-0001.jpg").convert("L")
    pixels = np.asarray(gray, dtype=np.uint16) * 16
    path = tmp_path / "chest.dcm"
    path.write_bytes(dicom(pixels, bits=12))
    label, _, original, _, _, _ = predict(client, upload=path)
    assert {item["label"] for item in label["confidences"]} == {"PNEUMONIA", "NORMAL"}
    assert Image.open(original).size == (pixels.shape[1], pixels.shape[0])


@pytest.mark.parametrize("name, content, message", [
    ("notes.png", b"these are my notes, not an image", "text"),
    ("empty.jpg", b"", "empty"),
    ("tiny.png", None, "too small"),
])
def test_bad_uploads_get_a_clear_message_and_the_app_keeps_serving(client, tmp_path, data_dir, name, content, message):
    path = tmp_path / name
    if content is None:
        Image.new("L", (10, 10), 128).save(path)
    else:
        path.write_bytes(content)
    with pytest.raises(AppError, match=message) as refused:
        predict(client, upload=path)
    assert "Traceback" not in str(refused.value)
    label, *_ = predict(client, data_dir / "test" / "NORMAL" / "IM-0001-0001.jpg")
    assert len(label["confidences"]) == 2


def test_no_image_is_a_clear_message(client):
    with pytest.raises(AppError, match="Upload a chest X-ray"):
        predict(client)


def test_an_output_image_rewritten_by_concurrent_requests_is_never_read_half_written(app):
    """Stock gr.Image rewrites the cached file in place; readers then saw thousands of short files here."""
    output = app.CachedJpegImage(type="numpy", format="jpeg")
    ramp = np.linspace(0, 255, 500, dtype=np.uint8)
    pixels = np.stack([np.tile(ramp, (400, 1)), np.tile(ramp[::-1], (400, 1)), np.full((400, 500), 90, np.uint8)], -1)
    path = Path(output.postprocess(pixels).path)
    size = path.stat().st_size
    short_reads, done = [], threading.Event()

    def write() -> None:
        for _ in range(100):
            output.postprocess(pixels)

    def read() -> None:
        while not done.is_set():
            if len(path.read_bytes()) != size:
                short_reads.append(path)

    readers = [threading.Thread(target=read) for _ in range(2)]
    writers = [threading.Thread(target=write) for _ in range(4)]
    for thread in readers + writers:
        thread.start()
    for thread in writers:
        thread.join()
    done.set()
    for thread in readers:
        thread.join()
    assert not short_reads
    assert np.abs(np.asarray(Image.open(path), dtype=int) - pixels).mean() < 3  # the image itself, as JPEG


def magenta_pixels(path: str) -> int:
    """How many pixels of a JPEG are the boxes' magenta (give or take JPEG's rounding)."""
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=int)
    return int(np.sum((pixels[..., 0] > 200) & (pixels[..., 1] < 80) & (pixels[..., 2] > 200)))


def boxed_example(app):
    """The first example with radiologists' boxes (an adult pneumonia from the RSNA test split)."""
    return next(item for item in app.examples if item.boxes)


def test_examples_are_children_and_adults_shown_as_thumbnails(app):
    shown = {(item.example.population, item.example.label) for item in app.examples}
    assert shown == {(population, label) for population in ("child", "adult") for label in ("NORMAL", "PNEUMONIA")}
    assert {item.example.kind for item in app.examples} >= {"typical", "borderline"}
    assert all(item.path.is_file() and item.path.is_relative_to(DATA_ROOT) for item in app.examples)
    boxed = [item for item in app.examples if item.boxes]
    assert boxed and all(item.example.population == "adult" and item.example.label == "PNEUMONIA" for item in boxed)
    assert set(app.example_galleries) == {"child", "adult"}
    for population, gallery in app.example_galleries.items():
        items = [item for item in app.examples if item.example.population == population]
        assert [entry["caption"] for entry in gallery.value] == [f"{item.example.label}, {item.example.kind}"
                                                                 for item in items]
        for entry in gallery.value:
            thumbnail = Image.open(entry["image"]["path"])
            assert thumbnail.format == "JPEG" and max(thumbnail.size) <= app.THUMBNAIL_SIDE
    assert "radiologists' boxes" in app.example_galleries["adult"].label


def test_an_example_with_boxes_gets_the_hit_test_and_the_mass_share(client, app, data_dir):
    item = boxed_example(app)
    _, decision, _, heatmap, _, result = client.predict(handle_file(str(item.path)), None, "Grad-CAM", 0.4, "main",
                                                        True, api_name="/predict")
    assert result["boxes"] == [[box.x, box.y, box.width, box.height] for box in item.boxes]
    assert isinstance(result["box_hit"], bool) and 0 <= result["box_mass_share"] <= 1
    assert result["box_mass_ratio"] > result["box_mass_share"]  # the boxes cover less than the whole image
    assert "radiologists' boxes" in decision and ("**inside**" if result["box_hit"] else "**outside**") in decision
    assert magenta_pixels(heatmap) > 100
    _, decision, _, heatmap, _, hidden = client.predict(handle_file(str(item.path)), api_name="/predict")
    assert hidden["box_hit"] == result["box_hit"]
    assert hidden["box_mass_share"] == pytest.approx(result["box_mass_share"])
    assert magenta_pixels(heatmap) == 0 and "Show the radiologists' boxes" in decision
    *_, child = client.predict(handle_file(str(data_dir / "test" / "NORMAL" / "IM-0001-0001.jpg")), api_name="/predict")
    assert "box_hit" not in child and "boxes" not in child


def test_compare_returns_every_methods_map_with_its_time(client, app):
    item = boxed_example(app)
    gallery, summary, result = client.predict(handle_file(str(item.path)), None, 0.4, "main", True,
                                              api_name="/compare")
    assert [entry["caption"].split(":")[0] for entry in gallery] == list(METHODS)
    assert all(" ms, peak " in entry["caption"] for entry in gallery)
    for entry in gallery:
        assert magenta_pixels(entry["image"]) > 100
    assert list(result["methods"]) == list(METHODS) and all(row["ms"] > 0 for row in result["methods"].values())
    assert f"evidence for **{result['label']}**" in summary


def test_the_lab_checks_give_the_sanity_check_and_the_curves(app):
    item = boxed_example(app)
    gallery, sanity, curves, faithfulness = app.run_checks(str(item.path))
    assert len(gallery) == 2 * len(METHODS)
    assert [caption for _, caption in gallery[::2]] == [f"{method}: trained model" for method in METHODS]
    assert all("rho" in caption and caption.endswith(("passes", "FAILS")) for _, caption in gallery[1::2])
    assert "Spearman" in sanity and all(f"| {method} |" in sanity for method in METHODS)
    assert isinstance(curves, Figure) and len(curves.axes) == 2
    assert all(f"| {method} |" in faithfulness for method in METHODS)
