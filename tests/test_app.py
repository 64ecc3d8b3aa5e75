"""The Gradio app in-process, through gradio_client: predictions, model info, bad uploads."""

import importlib
import socket
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from tests.dicom_files import dicom


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def app(data_dir):
    """The app module imported with an unreachable Hub."""
    patch = pytest.MonkeyPatch()
    patch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    patch.setenv("MODEL_REPO", "someone/unreachable-model")
    patch.setenv("EXAMPLES_DIR", str(data_dir))
    sys.modules.pop("app", None)
    yield importlib.import_module("app")
    patch.undo()


@pytest.fixture(scope="module")
def client(app, data_dir):
    """The app launched on 127.0.0.1."""
    _, url, _ = app.demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=closed_port(),
                                allowed_paths=[str(data_dir)], quiet=True)
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
    pixels = np.asarray(Image.open(data_dir / "test" / "NORMAL" / "IM-0001-0001.jpg").convert("L"), dtype=np.uint16) * 16
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
