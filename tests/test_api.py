"""The REST API beside the UI: the app served by uvicorn on 127.0.0.1 as `python app.py` serves it, called over
HTTP with huggingface_hub's InferenceClient, httpx and gradio_client."""

from __future__ import annotations

import base64
import http.client
import io
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn
from gradio_client import Client, handle_file
from huggingface_hub import InferenceClient
from PIL import Image

from cxr_pneumonia.config import DEFAULT_DATA_DIR, MAX_FILE_BYTES, MAX_REQUEST_BYTES
from cxr_pneumonia.explain import METHODS
from cxr_pneumonia.rest import create_rest_api
from tests.test_app import app_with_unreachable_hub, closed_port
from tests.test_imaging import png_header_only

PNEUMONIA_IMAGE = DEFAULT_DATA_DIR / "test" / "PNEUMONIA" / "person100_bacteria_475.jpg"
NORMAL_IMAGE = DEFAULT_DATA_DIR / "test" / "NORMAL" / "IM-0001-0001.jpg"
# A real radiograph that is not a chest X-ray, which the bundled model's input gate refuses.
MAMMOGRAM = DEFAULT_DATA_DIR.parent / "other_radiographs" / "mammogram" / "mammogram_22ec1a6e5eeb.jpg"
STARTUP_SECONDS = 30


@pytest.fixture(scope="module")
def app():
    """The app module imported with an unreachable Hub: the bundled model serves."""
    with app_with_unreachable_hub() as module:
        yield module


@contextmanager
def served(make_app: Callable[[int], Any]) -> Iterator[str]:
    """The ASGI app `make_app(port)` served by uvicorn on a free local port, as `python app.py` serves; its URL."""
    port = closed_port()
    server = uvicorn.Server(uvicorn.Config(make_app(port), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_SECONDS
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def url(app) -> Iterator[str]:
    """app.create_server(): the UI and the REST API on one port."""
    with served(lambda port: app.create_server("127.0.0.1", port)) as address:
        yield address


@pytest.fixture(scope="module")
def rest_client(url) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=60) as client:
        yield client


def test_inference_client_classifies_as_predict_does(url):
    """The Hub's client, raw bytes: both labels, highest first, scores summing to 1, equal to /predict's."""
    scores = InferenceClient(base_url=f"{url}/v1/classify").image_classification(PNEUMONIA_IMAGE)
    assert [item.label for item in scores] == ["PNEUMONIA", "NORMAL"]
    assert sum(item.score for item in scores) == pytest.approx(1.0)
    label, *_ = Client(f"{url}/", verbose=False).predict(handle_file(str(PNEUMONIA_IMAGE)), api_name="/predict")
    assert {item.label: item.score for item in scores} == pytest.approx(
        {item["label"]: item["confidence"] for item in label["confidences"]}, abs=1e-9)


def test_inference_client_top_k_sends_json_and_gets_the_top_label(url):
    client = InferenceClient(base_url=f"{url}/v1/classify")
    everything = client.image_classification(NORMAL_IMAGE)
    top = client.image_classification(NORMAL_IMAGE, top_k=1)  # {"inputs": base64, "parameters": {"top_k": 1}}
    assert len(everything) == 2 and [item.label for item in top] == [everything[0].label]
    assert top[0].score == pytest.approx(everything[0].score)


def test_explain_returns_the_analysis_with_the_heatmap(rest_client):
    image = PNEUMONIA_IMAGE.read_bytes()
    body = {"inputs": base64.b64encode(image).decode(), "parameters": {"method": "Layer-CAM", "version": "main"}}
    result = rest_client.post("/v1/explain", json=body).raise_for_status().json()
    assert result["method"] == "Layer-CAM" and result["gate_passed"] is True
    assert result["label"] == "PNEUMONIA" and result["pneumonia_probability"] >= result["threshold"]
    assert result["model_version"] and "model_commit" in result and "not a diagnosis" in result["decision"]
    overlay = Image.open(io.BytesIO(base64.b64decode(result["overlay_jpeg_base64"])))
    assert overlay.format == "JPEG" and overlay.mode == "RGB" and overlay.size == Image.open(PNEUMONIA_IMAGE).size
    classified = rest_client.post("/v1/classify", content=image).json()
    assert classified[0]["score"] == pytest.approx(result["pneumonia_probability"])
    raw = rest_client.post("/v1/explain", params={"opacity": "0"}, content=image).raise_for_status().json()
    assert raw["method"] == "Grad-CAM"
    assert raw["pneumonia_probability"] == pytest.approx(result["pneumonia_probability"])


def test_compare_returns_every_methods_heatmap_and_the_box_scores_of_a_known_example(app, rest_client):
    example = next(item for item in app.examples if item.boxes)
    image = example.path.read_bytes()
    result = rest_client.post("/v1/compare", content=image, params={"opacity": "0.5"}).raise_for_status().json()
    assert list(result["methods"]) == list(METHODS) and result["gate_passed"] is True
    assert result["boxes"] == [[box.x, box.y, box.width, box.height] for box in example.boxes]
    for row in result["methods"].values():
        overlay = Image.open(io.BytesIO(base64.b64decode(row["overlay_jpeg_base64"])))
        assert overlay.size == Image.open(example.path).size and row["ms"] > 0
        assert isinstance(row["box_hit"], bool) and 0 <= row["box_mass_share"] <= 1
    explained = rest_client.post("/v1/explain", content=image).raise_for_status().json()
    assert explained["box_hit"] == result["methods"]["Grad-CAM"]["box_hit"]
    other = rest_client.post("/v1/compare", content=PNEUMONIA_IMAGE.read_bytes()).raise_for_status().json()
    assert "boxes" not in other and "box_hit" not in other["methods"]["SmoothGrad"]


def test_model_route_answers_what_model_info_answers(url, rest_client):
    info = rest_client.get("/v1/model").raise_for_status().json()
    assert info == Client(f"{url}/", verbose=False).predict(api_name="/model_info")
    assert info["source"] == "bundled" and "could not be reached" in info["fallback_reason"]


@pytest.mark.parametrize("route", ["/v1/classify", "/v1/explain", "/v1/compare"])
def test_an_image_the_gate_refuses_is_422_with_the_reason(rest_client, route):
    response = rest_client.post(route, content=MAMMOGRAM.read_bytes())
    assert response.status_code == 422
    refusal = response.json()
    assert "does not look like a chest X-ray" in refusal["error"] and "Input gate:" in refusal["error"]
    assert refusal["gate_passed"] is False and refusal["pneumonia_probability"] is None


def small_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (10, 10), 128).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("route, body, params, status, message", [
    ("/v1/classify", b"", {}, 400, "The file is empty"),
    ("/v1/classify", PNEUMONIA_IMAGE.read_bytes()[:3000], {}, 400, "damaged or incomplete"),
    ("/v1/classify", small_png(), {}, 400, "too small"),
    ("/v1/classify", b"these are my notes, not an image", {}, 415, "a text file, not an image"),
    ("/v1/explain", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", {}, 415, "a PDF document"),
    ("/v1/classify", png_header_only(100_000, 100_000), {}, 413, "over 80,000,000 pixels"),
    ("/v1/classify", b"{\"inputs\": \"abc", {}, 400, "not valid JSON"),
    ("/v1/classify", b"{\"image\": \"abc\"}", {}, 400, "needs \"inputs\""),
    ("/v1/classify", b"{\"inputs\": \"not base64!\"}", {}, 400, "not valid base64"),
    ("/v1/classify", NORMAL_IMAGE.read_bytes(), {"top_k": "0"}, 400, "top_k must be a whole number"),
    ("/v1/classify", NORMAL_IMAGE.read_bytes(), {"topk": "1"}, 400, "Unknown parameter 'topk'"),
    ("/v1/explain", NORMAL_IMAGE.read_bytes(), {"method": "Score-CAM"}, 400, "Unknown method"),
    ("/v1/explain", NORMAL_IMAGE.read_bytes(), {"opacity": "2"}, 400, "opacity must be a number from 0 to 1"),
    ("/v1/compare", NORMAL_IMAGE.read_bytes(), {"method": "Grad-CAM"}, 400, "Unknown parameter 'method'"),
    ("/v1/classify", NORMAL_IMAGE.read_bytes(), {"prevalence": "0"}, 400, "prevalence must be a number strictly"),
    ("/v1/classify", NORMAL_IMAGE.read_bytes(), {"prevalence": "1"}, 400, "prevalence must be a number strictly"),
    ("/v1/classify", NORMAL_IMAGE.read_bytes(), {"prevalence": "abc"}, 400, "prevalence must be a number strictly"),
    ("/v1/explain", NORMAL_IMAGE.read_bytes(), {"prevalence": "0"}, 400, "prevalence must be a number strictly"),
    ("/v1/explain", NORMAL_IMAGE.read_bytes(), {"prevalence": "1"}, 400, "prevalence must be a number strictly"),
    ("/v1/explain", NORMAL_IMAGE.read_bytes(), {"prevalence": "abc"}, 400, "prevalence must be a number strictly"),
], ids=["empty", "truncated", "tiny", "text", "pdf", "pixel bomb", "bad json", "no inputs", "bad base64",
        "bad top_k", "unknown parameter", "unknown method", "bad opacity", "compare takes no method",
        "classify prevalence 0", "classify prevalence 1", "classify prevalence abc", "explain prevalence 0",
        "explain prevalence 1", "explain prevalence abc"])
def test_bad_requests_get_the_status_and_the_message(rest_client, route, body, params, status, message):
    response = rest_client.post(route, content=body, params=params)
    assert response.status_code == status
    assert message in response.json()["error"] and "Traceback" not in response.text


def test_a_file_over_the_byte_limit_is_413_with_the_decoders_message(rest_client):
    response = rest_client.post("/v1/classify", content=b"\xff\xd8\xff" + bytes(MAX_FILE_BYTES))
    assert response.status_code == 413 and "over the limit of" in response.json()["error"]


def test_a_body_declared_over_the_request_limit_is_refused_before_it_is_sent(url):
    """Only the headers go out: the server answers 413 from Content-Length alone."""
    address = urlsplit(url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    connection.putrequest("POST", "/v1/classify")
    connection.putheader("Content-Length", str(MAX_REQUEST_BYTES + 1))
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413 and b"over the limit of" in response.read()
    connection.close()


def test_cors_is_off_by_default(rest_client):
    response = rest_client.post("/v1/classify", content=NORMAL_IMAGE.read_bytes(), headers={"Origin": "https://example.org"})
    assert response.status_code == 200 and "access-control-allow-origin" not in response.headers


def test_cors_allows_the_origins_given(app):
    """What API_CORS_ORIGINS sets: a browser page on that origin may call the API, no other."""
    with ThreadPoolExecutor(1) as workers, served(
            lambda _: create_rest_api(app.service, workers, ["https://viewer.example"])) as url:
        preflight = {"Access-Control-Request-Method": "POST"}
        allowed = httpx.options(f"{url}/classify", headers={"Origin": "https://viewer.example", **preflight})
        other = httpx.options(f"{url}/classify", headers={"Origin": "https://example.org", **preflight})
    assert allowed.headers["access-control-allow-origin"] == "https://viewer.example"
    assert "access-control-allow-origin" not in other.headers


class CountingExecutor(ThreadPoolExecutor):
    """A thread pool that counts the calls handed to it."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.submitted = 0

    def submit(self, *args: Any, **kwargs: Any):
        self.submitted += 1
        return super().submit(*args, **kwargs)


def test_requests_beyond_the_waiting_limit_are_refused_with_503(app):
    """With the one model thread busy and two requests waiting for it, a third is refused at once; the two are
    answered when the thread is free."""
    release = threading.Event()
    with CountingExecutor(1) as workers, served(
            lambda _: create_rest_api(app.service, workers, max_in_flight=2)) as url, ThreadPoolExecutor(2) as pool:
        workers.submit(release.wait)
        waiting = [pool.submit(httpx.post, f"{url}/classify", content=NORMAL_IMAGE.read_bytes(), timeout=60)
                   for _ in range(2)]
        deadline = time.monotonic() + STARTUP_SECONDS
        while workers.submitted < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        try:
            refused = httpx.post(f"{url}/classify", content=NORMAL_IMAGE.read_bytes(), timeout=10)
        finally:
            release.set()  # else a failure would leave the model thread blocked and the test hanging
        answered = [future.result() for future in waiting]
    assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
    assert "busy" in refused.json()["error"]
    assert [response.status_code for response in answered] == [200, 200]


def test_the_ui_and_the_api_share_the_model_workers(app, url, monkeypatch):
    """REST and UI requests at once: every analysis runs on the model threads, never more at once than the limit."""
    running, peak, threads, lock = [0], [0], set(), threading.Lock()

    def counted(analyze):
        def run(*args, **kwargs):
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
                threads.add(threading.current_thread().name)
            try:
                return analyze(*args, **kwargs)
            finally:
                with lock:
                    running[0] -= 1
        return run

    monkeypatch.setattr(app.service, "analyze_bytes", counted(app.service.analyze_bytes))
    monkeypatch.setattr(app.service, "analyze_file", counted(app.service.analyze_file))
    image = NORMAL_IMAGE.read_bytes()

    def call_rest() -> str:
        with httpx.Client(base_url=url, timeout=60) as client:
            return client.post("/v1/classify", content=image).raise_for_status().json()[0]["label"]

    def call_ui() -> str:
        label, *_ = Client(f"{url}/", verbose=False).predict(handle_file(str(NORMAL_IMAGE)), api_name="/predict")
        return label["label"]

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(call_rest) for _ in range(6)] + [pool.submit(call_ui) for _ in range(2)]
        labels = [future.result() for future in futures]
    assert len(set(labels)) == 1
    assert threads and all(name.startswith("model") for name in threads)
    assert peak[0] <= app.CONCURRENCY_LIMIT


def test_prevalence_in_json_parameters_and_the_three_way_answer(rest_client):
    body = {"inputs": base64.b64encode(NORMAL_IMAGE.read_bytes()).decode(), "parameters": {"prevalence": 0.3}}
    result = rest_client.post("/v1/explain", json=body).raise_for_status().json()
    assert result["prevalence"] == 0.3 and result["answer"] == result["label"]  # v2.1.0: no band
    assert result["pneumonia_probability_at_prevalence"] is None  # v2.1.0 states no calibrated prevalence
    refused = rest_client.post("/v1/classify", json={**body, "parameters": {"prevalence": 1.5}})
    assert refused.status_code == 400 and "strictly between 0 and 1" in refused.json()["error"]


@pytest.mark.parametrize("version", ["v1.0.0", "does-not-exist"])
def test_a_version_that_cannot_be_served_is_404_never_another_model(rest_client, version):
    """The Hub is out of reach here: the list of versions cannot be fetched, and the answer says so."""
    for response in (rest_client.post("/v1/explain", params={"version": version}, content=NORMAL_IMAGE.read_bytes()),
                     rest_client.post("/v1/compare", params={"version": version}, content=NORMAL_IMAGE.read_bytes()),
                     rest_client.get("/v1/model", params={"version": version})):
        assert response.status_code == 404
        error = response.json()
        assert "available" in error and error["available"] is None
        assert "cannot be served" in error["error"] and "cannot be fetched" in error["error"]
    served = rest_client.get("/v1/model", params={"version": "v2.1.0"}).raise_for_status().json()
    assert served["version"] == "v2.1.0"


def test_an_unknown_version_lists_the_available_ones(hub, tiny_model_dir, tmp_path):
    """With a reachable Hub, a version it does not have is 404 with the tags it has."""
    from cxr_pneumonia.hub import HubSettings, publish_model_dir
    from cxr_pneumonia.service import PneumoniaService

    settings = HubSettings(repo_id="someone/versions", revision="v1.0.0", endpoint=hub.url,
                           cache_dir=str(tmp_path / "cache"))
    for tag in ("v1.0.0", "v1.1.0"):
        publish_model_dir(settings, tiny_model_dir, tag, tag)
    service = PneumoniaService(settings)
    with ThreadPoolExecutor(1) as workers, served(lambda _: create_rest_api(service, workers)) as url:
        missing = httpx.get(f"{url}/model", params={"version": "v9.9.9"}, timeout=60)
        other = httpx.get(f"{url}/model", params={"version": "v1.1.0"}, timeout=60)
    assert missing.status_code == 404 and missing.json()["available"] == ["v1.1.0", "v1.0.0"]
    assert other.status_code == 200 and other.json()["version"] == "v1.1.0"
