"""Gradio Space: pneumonia or normal on a chest X-ray, with a heatmap and an explanation lab.

The Space's entry point, kept thin: it builds the service over the `cxr_pneumonia` library, the page (`ui`)
and the REST API (`cxr_pneumonia.rest`), and `python app.py` serves the page at / and the API at /v1 on one port.
Tests import `demo` from here.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor

# Uploads are medical images and the Space may run offline: no telemetry, set before the imports read it.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # server logs, not a terminal

import gradio as gr
import uvicorn
from fastapi import FastAPI

from cxr_pneumonia.config import RESULT_RETENTION_SECONDS
from cxr_pneumonia.examples import available_examples, boxes_by_digest
from cxr_pneumonia.hub import HubSettings, configure_hub_timeouts
from cxr_pneumonia.rest import API_PREFIX, create_rest_api
from cxr_pneumonia.service import PneumoniaService
from cxr_pneumonia.site_profile import ProfileError, read_site_profile
from ui.layout import CSS, THEME, build_demo

CONCURRENCY_LIMIT = int(os.environ.get("CONCURRENCY_LIMIT", "2"))  # requests computed at once; README "Performance"
MAX_QUEUE_SIZE = 64  # requests waiting for the model, on the page's queue and on the REST API's each
# Seconds an upload and the images made from it stay on disk after the answer (README "Privacy").
RETENTION_SECONDS = float(os.environ.get("RETENTION_SECONDS", RESULT_RETENTION_SECONDS))
CORS_ORIGINS = [origin.strip() for origin in os.environ.get("API_CORS_ORIGINS", "").split(",") if origin.strip()]

settings = HubSettings.from_environment()
configure_hub_timeouts(settings.timeout)
examples = available_examples(settings)
# A hospital's own copy decides at the threshold fitted on its X-rays (docs/maintainers.md, "Your site's threshold").
try:
    service = PneumoniaService(settings, boxes_by_digest(examples), read_site_profile(os.environ.get("SITE_PROFILE")))
except ProfileError as error:  # unreadable, edited, or fitted for another model: say so, and do not serve
    raise SystemExit(f"SITE_PROFILE cannot be used: {error}") from None
# The model runs here for the UI and the REST API alike: one limit for both, taken in arrival order.
model_workers = ThreadPoolExecutor(CONCURRENCY_LIMIT, thread_name_prefix="model")
demo = build_demo(service, model_workers, examples, RETENTION_SECONDS)
demo.queue(default_concurrency_limit=CONCURRENCY_LIMIT, max_size=MAX_QUEUE_SIZE)


def create_server(host: str = "0.0.0.0", port: int = 7860) -> FastAPI:
    """The REST API at /v1 and the UI at /, on one app: what `python app.py` serves."""
    server = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    api = create_rest_api(service, model_workers, CORS_ORIGINS, max_in_flight=CONCURRENCY_LIMIT + MAX_QUEUE_SIZE)
    server.mount(API_PREFIX, api)
    return gr.mount_gradio_app(server, demo, path="/", server_name=host, server_port=port,
                               allowed_paths=[str(item.path.parent) for item in examples], show_error=True, css=CSS,
                               theme=THEME, i18n=demo.page_i18n)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    host = os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0")
    port = int(os.environ.get("GRADIO_SERVER_PORT", "7860"))
    print(f"Serving the app on http://{host}:{port} (REST API under {API_PREFIX})", flush=True)
    uvicorn.run(create_server(host, port), host=host, port=port, log_level="warning")
