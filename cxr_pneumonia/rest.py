"""Plain HTTP routes beside the UI, in the Hugging Face Inference API's convention for image classifiers.

    POST /v1/classify  the image bytes, or JSON {"inputs": <base64 image>, "parameters": {"top_k": n}}
                       -> [{"label": "PNEUMONIA", "score": p}, {"label": "NORMAL", "score": 1 - p}]
                       (parameter prevalence: the scores at that prevalence, for a model that states its own)
    POST /v1/explain   the same inputs, parameters method, version, opacity and prevalence -> the analysis
                       (with "answer": PNEUMONIA, NORMAL or UNCERTAIN) and its heatmap
    POST /v1/compare   the same inputs, parameters version and opacity -> the analysis and every method's heatmap
    POST /v1/evaluate  a zip of labelled X-rays (application/zip, or a multipart file; ?version=) -> the metrics on
                       them, as training.evaluate computes them, and one row per image (cxr_pneumonia.evaluation)
    POST /v1/calibrate the same zip (NORMAL/ required, PNEUMONIA/ optional; parameters site and target_specificity)
                       -> a site profile: the threshold fitted on the site's normal X-rays (cxr_pneumonia.site_profile)
    GET  /v1/model     where the model came from and its test metrics (?version=v1.0.0 for another version)

Every route but /v1/model takes the parameter site_profile (a profile from /v1/calibrate, as a JSON object) and
then decides at its threshold; the server keeps no profile. Parameters may also be sent in the query string
(?top_k=1, site_profile as JSON text), the way to pass them with raw bytes, or as the fields of a multipart body
whose file is the image or zip (curl -F file=@x.png -F top_k=1). The body's kind is sniffed from its bytes and
Content-Type is read only to find a multipart body. Errors answer
{"error": message}: 400, 413 or 415 for what the decoder refuses, 400 for a bad parameter (prevalence must lie
strictly between 0 and 1) or a malformed or edited site profile, 409 for a site profile fitted for another model,
404 with "available" (the tags, or null when they cannot be listed) for a version
that cannot be served, 422 when the input gate refuses the image,
503 (with Retry-After) when more requests are already waiting for the model than the app allows. An evaluation
counts as one request; its batches run on the model threads one at a time, each queued behind the requests
already waiting, so it holds at most one model thread and single images are served between its batches.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import logging
import tempfile
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from concurrent.futures import Executor
from contextlib import contextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser

from cxr_pneumonia.config import (
    DEFAULT_OPACITY,
    DEFAULT_PREVALENCE,
    DEFAULT_TARGET_SPECIFICITY,
    MAX_REQUEST_BYTES,
    MAX_ZIP_TOTAL_BYTES,
)
from cxr_pneumonia.evaluation import evaluate_archive, on_executor
from cxr_pneumonia.explain import DEFAULT_METHOD, METHODS
from cxr_pneumonia.imaging import (
    ImageDecodeError,
    ImageTooLargeError,
    NotAnXrayError,
    UnsupportedImageError,
    check_file_size,
)
from cxr_pneumonia.labelled_zip import ArchiveError, open_labelled_zip
from cxr_pneumonia.service import Analysis, PneumoniaService, UnknownVersionError, encode_jpeg
from cxr_pneumonia.site_profile import ProfileError, ProfileMismatchError, SiteProfile

API_PREFIX = "/v1"
CLASSIFY_PARAMETERS = ("top_k", "prevalence", "site_profile")
EXPLAIN_PARAMETERS = ("method", "version", "opacity", "prevalence", "site_profile")
COMPARE_PARAMETERS = ("version", "opacity", "site_profile")
EVALUATE_PARAMETERS = ("version", "site_profile")
CALIBRATE_PARAMETERS = ("version", "site", "target_specificity")
MULTIPART_FIELDS = 10
_SNIFF_BYTES = 64
SPOOL_BYTES = 8 * 1024 * 1024  # an uploaded zip past this goes to a temporary file, not memory
BUSY_MESSAGE = "The server is busy with other requests. Please try again in a few seconds."
RETRY_AFTER_SECONDS = 5
log = logging.getLogger(__name__)

Parameters = dict[str, Any]


class ApiError(Exception):
    """A request the API refuses: answered with `status` and {"error": message, **details}."""

    def __init__(self, status: int, message: str, details: Mapping[str, Any] | None = None,
                 headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.details = dict(details or {})
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        """The error as the JSON response the client gets."""
        return JSONResponse({"error": str(self), **self.details}, status_code=self.status, headers=self.headers)


def create_rest_api(service: PneumoniaService, workers: Executor, cors_origins: Iterable[str] = (),
                    max_in_flight: int | None = None) -> FastAPI:
    """The API as an app to mount at API_PREFIX. The model runs on `workers` (shared with the UI, so both
    keep to one concurrency limit), never on the event loop; beyond `max_in_flight` model requests at once
    (running or waiting), more are refused with 503. No CORS headers unless origins are given."""
    api = FastAPI(title="Chest X-ray pneumonia API", docs_url=None, redoc_url=None, openapi_url=None)
    if origins := list(cors_origins):
        api.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST"], allow_headers=["*"])
    in_flight = 0  # changed on the event loop only, so no lock

    @contextmanager
    def admitted() -> Iterator[None]:
        """Count a model request while it runs or waits; refuse it (503) when max_in_flight are in already."""
        nonlocal in_flight
        if max_in_flight is not None and in_flight >= max_in_flight:
            raise ApiError(503, BUSY_MESSAGE, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        in_flight += 1
        try:
            yield
        finally:
            in_flight -= 1

    async def on_workers(handle: Callable[[bytes, Parameters], Any], request: Request) -> JSONResponse:
        with admitted():
            body, fields = await multipart_image(request, await read_body(request))
            loop = asyncio.get_running_loop()
            parameters = {**request.query_params, **fields}
            return JSONResponse(await loop.run_in_executor(workers, handle, body, parameters))

    async def with_zip(handle: Callable[[Any, Parameters], dict[str, Any]], request: Request) -> JSONResponse:
        with admitted():
            return await zip_request(handle, request)

    @api.post("/classify")
    async def classify(request: Request) -> JSONResponse:
        return await answer(on_workers(lambda body, query: classify_body(service, body, query), request))

    @api.post("/explain")
    async def explain(request: Request) -> JSONResponse:
        return await answer(on_workers(lambda body, query: explain_body(service, body, query), request))

    @api.post("/compare")
    async def compare(request: Request) -> JSONResponse:
        return await answer(on_workers(lambda body, query: compare_body(service, body, query), request))

    @api.post("/evaluate")
    async def evaluate(request: Request) -> JSONResponse:
        return await answer(with_zip(lambda upload, query: evaluate_zip(service, workers, upload, query), request))

    @api.post("/calibrate")
    async def calibrate(request: Request) -> JSONResponse:
        return await answer(with_zip(lambda upload, query: calibrate_zip(service, workers, upload, query), request))

    @api.get("/model")
    async def model(version: str = "") -> JSONResponse:
        return await answer(run_in_threadpool(lambda: JSONResponse(service.serving(version or None).info())))

    @api.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return ApiError(error.status_code, str(error.detail)).response()

    return api


async def answer(respond: Awaitable[JSONResponse]) -> JSONResponse:
    """The route's response, or its error as JSON: the decoder's message, ours, or a generic one."""
    try:
        return await respond
    except ApiError as error:
        return error.response()
    except ImageDecodeError as error:
        return ApiError(decode_error_status(error), str(error)).response()
    except ArchiveError as error:
        return ApiError(error.status, str(error)).response()
    except ProfileError as error:
        status = 409 if isinstance(error, ProfileMismatchError) else 400
        return ApiError(status, str(error), {"code": error.code, **error.values}).response()
    except UnknownVersionError as error:
        return ApiError(404, str(error), {"available": error.available}).response()
    except Exception:
        log.exception("REST request failed")
        return ApiError(500, "The server failed to process this request. Please try again later.").response()


def decode_error_status(error: ImageDecodeError) -> int:
    """413 for an image too large to take, 415 for a format this app cannot read, 400 for the rest."""
    if isinstance(error, ImageTooLargeError):
        return 413
    if isinstance(error, UnsupportedImageError):
        return 415
    if isinstance(error, NotAnXrayError):
        return 422  # as the input gate's refusals
    return 400


async def read_body(request: Request) -> bytes:
    """The request body, refused (413) as soon as it is known to exceed MAX_REQUEST_BYTES."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit():
        check_request_size(int(declared))
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        check_request_size(len(body))
    return bytes(body)


async def zip_request(handle: Callable[[Any, Parameters], dict[str, Any]], request: Request) -> JSONResponse:
    """`handle` run in a plain thread on the uploaded zip (a raw body or a multipart file, spooled) and the
    parameters of the query string and the multipart fields."""
    with tempfile.SpooledTemporaryFile(SPOOL_BYTES) as body:
        await spool_body(request, body)
        upload, fields = await multipart_form(request, body)
        try:
            parameters = {**request.query_params, **fields}
            return JSONResponse(await run_in_threadpool(handle, upload.file if upload else body, parameters))
        finally:
            if upload is not None:
                await upload.close()


def evaluate_zip(service: PneumoniaService, workers: Executor, upload: Any, query: Parameters) -> dict[str, Any]:
    """The evaluation of a zip's labelled X-rays; its batches run on the model threads."""
    parameters = known_parameters(query, EVALUATE_PARAMETERS)
    loaded = service.serving(str(parameters.get("version") or "") or None, site_profile_of(parameters))
    with open_labelled_zip(upload) as archive:
        return evaluate_archive(loaded.model, archive, on_executor(workers)).as_json() | {
            "site": None if loaded.profile is None else loaded.profile.site}


def calibrate_zip(service: PneumoniaService, workers: Executor, upload: Any, query: Parameters) -> dict[str, Any]:
    """A site profile fitted on a zip's NORMAL (and PNEUMONIA) X-rays; its batches run on the model threads."""
    parameters = known_parameters(query, CALIBRATE_PARAMETERS)
    if "site" not in parameters:
        raise ApiError(400, "Name the site the X-rays come from: the parameter site (at most 64 characters).")
    target = open_unit_float("target_specificity", parameters.get("target_specificity", DEFAULT_TARGET_SPECIFICITY))
    with open_labelled_zip(upload) as archive:
        profile = service.fit_profile(archive, str(parameters["site"]), target,
                                      str(parameters.get("version") or "") or None, on_executor(workers))
    return profile.to_json()


def site_profile_of(parameters: Parameters) -> SiteProfile | None:
    """The site_profile parameter (a JSON object, or its text from a query string or form field), or None."""
    document = parameters.get("site_profile")
    if document is None or document == "":
        return None
    if isinstance(document, str):
        document = parse_json(document.encode(), "site_profile")
    return SiteProfile.from_json(document)


async def spool_body(request: Request, sink: Any) -> None:
    """Copy the request body into `sink`, refusing (413) a body declared or found over MAX_ZIP_TOTAL_BYTES."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_ZIP_TOTAL_BYTES:
        raise ApiError(413, zip_too_large_message())
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_ZIP_TOTAL_BYTES:
            raise ApiError(413, zip_too_large_message())
        sink.write(chunk)
    sink.seek(0)


def zip_too_large_message() -> str:
    return f"The upload is over {MAX_ZIP_TOTAL_BYTES / 1e6:,.0f} MB. Split the images into smaller zips."


def is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").lower().startswith("multipart/form-data")


async def multipart_form(request: Request, body: Any) -> tuple[UploadFile | None, dict[str, str]]:
    """The file and the text fields of a multipart/form-data body (parsed from the spooled copy); (None, {}) for a
    raw body."""
    if not is_multipart(request):
        return None, {}

    async def chunks():
        while chunk := body.read(SPOOL_BYTES):
            yield chunk

    try:
        form = await MultiPartParser(request.headers, chunks(), max_files=1, max_fields=MULTIPART_FIELDS).parse()
    except MultiPartException as error:
        raise ApiError(400, f"The multipart body cannot be read ({error.message}).") from None
    files = [value for value in form.values() if isinstance(value, UploadFile)]
    if not files:
        raise ApiError(400, "The multipart body has no file: send it as a file field, e.g. curl -F file=@x.zip.")
    return files[0], {key: value for key, value in form.items() if isinstance(value, str)}


async def multipart_image(request: Request, body: bytes) -> tuple[bytes, dict[str, str]]:
    """The image bytes and text fields of a multipart body (curl -F file=@x.png), or the body as it is."""
    if not is_multipart(request):
        return body, {}
    upload, fields = await multipart_form(request, io.BytesIO(body))
    try:
        return await upload.read(), fields
    finally:
        await upload.close()


def check_request_size(size: int) -> None:
    """Refuse a body of `size` bytes if it is over MAX_REQUEST_BYTES, with the decoder's message."""
    if size > MAX_REQUEST_BYTES:
        check_file_size(size)  # then also over the decoder's limit: raises its ImageTooLargeError


def classify_body(service: PneumoniaService, body: bytes, query: Parameters) -> list[dict[str, Any]]:
    """Both labels with their calibrated probabilities, highest first, at most top_k of them."""
    image, parameters = parse_request(body, query, CLASSIFY_PARAMETERS)
    top_k = positive_int("top_k", parameters.get("top_k", 2))
    prevalence = open_unit_float("prevalence", parameters.get("prevalence", DEFAULT_PREVALENCE))
    prediction = accepted(service.analyze_bytes(image, profile=site_profile_of(parameters))).prediction
    pneumonia = prediction.probability_at(prevalence)
    ranked = sorted({"NORMAL": 1.0 - pneumonia, "PNEUMONIA": pneumonia}.items(), key=lambda item: item[1], reverse=True)
    return [{"label": label, "score": score} for label, score in ranked[:top_k]]


def explain_body(service: PneumoniaService, body: bytes, query: Parameters) -> dict[str, Any]:
    """The analysis as JSON (probability, label, threshold, gate verdict, model) with the overlay as base64 JPEG."""
    image, parameters = parse_request(body, query, EXPLAIN_PARAMETERS)
    method = str(parameters.get("method", DEFAULT_METHOD))
    if method not in METHODS:
        raise ApiError(400, f"Unknown method {method[:40]!r}: choose one of {', '.join(METHODS)}.")
    opacity = unit_float("opacity", parameters.get("opacity", DEFAULT_OPACITY))
    prevalence = open_unit_float("prevalence", parameters.get("prevalence", DEFAULT_PREVALENCE))
    analysis = accepted(service.analyze_bytes(image, method, opacity, str(parameters.get("version") or "") or None,
                                              profile=site_profile_of(parameters)))
    return {**analysis.as_json(prevalence), "method": method, "decision": plain_text(analysis.decision),
            "overlay_jpeg_base64": base64.b64encode(encode_jpeg(analysis.overlay)).decode("ascii")}


def compare_body(service: PneumoniaService, body: bytes, query: Parameters) -> dict[str, Any]:
    """The analysis as JSON with every method's heatmap over the image (base64 JPEG), its time and box scores."""
    image, parameters = parse_request(body, query, COMPARE_PARAMETERS)
    opacity = unit_float("opacity", parameters.get("opacity", DEFAULT_OPACITY))
    comparison = service.compare_bytes(image, opacity, str(parameters.get("version") or "") or None,
                                       profile=site_profile_of(parameters))
    accepted(comparison.analysis)
    result = comparison.as_json()
    for method, view in comparison.views.items():
        result["methods"][method]["overlay_jpeg_base64"] = base64.b64encode(encode_jpeg(view.overlay)).decode("ascii")
    return {**result, "decision": plain_text(comparison.analysis.decision)}


def accepted(analysis: Analysis) -> Analysis:
    """The analysis, unless the input gate refused the image: then a 422 saying why, with the gate's verdict."""
    if analysis.refused:
        raise ApiError(422, plain_text(analysis.decision), analysis.as_json())
    return analysis


def parse_request(body: bytes, query: Parameters, known: tuple[str, ...]) -> tuple[bytes, Parameters]:
    """The image bytes and parameters: a raw image body with the query string's parameters, or JSON with the
    image as base64 in "inputs" and a "parameters" object (which wins over the query string)."""
    if body[:_SNIFF_BYTES].lstrip()[:1] == b"{":
        image, parameters = parse_json_body(body)
        parameters = {**query, **parameters}
    else:
        image, parameters = body, query
    return image, known_parameters(parameters, known)


def known_parameters(parameters: Parameters, known: tuple[str, ...]) -> Parameters:
    """The parameters, or a 400 naming the first one this route does not take."""
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise ApiError(400, f"Unknown parameter {unknown[0][:40]!r}; this route takes {', '.join(known)}.")
    return parameters


def parse_json(text: bytes, what: str) -> Any:
    """JSON text parsed, or a 400: not JSON, or nested too deep to parse (a RecursionError in json.loads)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as error:
        reason = "it is nested too deeply" if isinstance(error, RecursionError) else str(error)
        raise ApiError(400, f"The {what} is not valid JSON ({reason}).") from None


def parse_json_body(body: bytes) -> tuple[bytes, Parameters]:
    """The base64 image and the parameters of an Inference API JSON body."""
    payload = parse_json(body, "body, which starts like JSON,")
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), str):
        raise ApiError(400, 'A JSON body needs "inputs": the image file as a base64 string.')
    parameters = payload.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ApiError(400, '"parameters" must be a JSON object, e.g. {"top_k": 1}.')
    return decode_base64(payload["inputs"]), parameters


def decode_base64(text: str) -> bytes:
    """Standard base64, line breaks and a data: URL prefix allowed."""
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, '"inputs" is not valid base64: send the image file base64-encoded.') from None


def positive_int(name: str, value: Any) -> int:
    """A parameter as a whole number of at least 1 (from JSON or the query string), or a 400."""
    if isinstance(value, bool) or not str(value).isdigit() or int(value) < 1:
        raise ApiError(400, f"{name} must be a whole number of at least 1, not {str(value)[:40]!r}.")
    return int(value)


def unit_float(name: str, value: Any) -> float:
    """A parameter as a number from 0 to 1 (from JSON or the query string), or a 400."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not 0.0 <= number <= 1.0:
        raise ApiError(400, f"{name} must be a number from 0 to 1, not {str(value)[:40]!r}.")
    return number


def open_unit_float(name: str, value: Any) -> float:
    """A parameter as a number strictly between 0 and 1 (a prevalence), or a 400."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, bool) or not 0.0 < number < 1.0:
        raise ApiError(400, f"{name} must be a number strictly between 0 and 1, not {str(value)[:40]!r}.")
    return number


def plain_text(markdown: str) -> str:
    """A Markdown message from the service (bold, paragraphs) as one line of plain text."""
    return " ".join(markdown.replace("**", "").split())
