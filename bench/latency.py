"""Latency benchmark on this machine: our model against DenseNet-121 (CheXNet's architecture) and the
seed baseline, in-process and over HTTP (gradio_client and the REST API), plus cold start and peak memory.

    .venv/bin/python bench/latency.py --json bench/results/latency.json
    .venv/bin/python bench/latency.py --rest-only --json bench/results/latency_rest.json   # the REST routes alone
    .venv/bin/python bench/latency.py --compare-only --json bench/results/latency_compare.json  # the lab's compare view
"""

from __future__ import annotations

import argparse
import functools
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import numpy as np
from gradio_client import handle_file

from bench.common import (
    AppProcess,
    new_client,
    percentiles,
    report,
    start_app,
    timed_ms,
    timed_ms_interleaved,
    wait_for_client,
    wait_for_rest,
)
from cxr_pneumonia.architectures import build_model, count_flops, last_conv_layer_name
from cxr_pneumonia.config import BUNDLED_MODEL_DIR, DEFAULT_DATA_DIR
from cxr_pneumonia.explain import METHODS, Explainer, display_image, overlay_heatmap
from cxr_pneumonia.imaging import read_image_file
from cxr_pneumonia.model import ModelConfig, PneumoniaModel, load_model_dir

DEFAULT_IMAGE = DEFAULT_DATA_DIR / "test" / "PNEUMONIA" / "person100_bacteria_475.jpg"
COMPARE_TARGET_MS = 1500  # the explanation lab's compare view: all four maps of one image


def gate_predict_and_explain(model: PneumoniaModel, explainer: Explainer, gray: np.ndarray, method: str) -> None:
    """What one request computes: preprocessing, input gate, calibrated prediction, heatmap of the decided class."""
    explainer.gate_predict_and_explain(model.preprocess(gray), method)


def explain_without_gate(model: PneumoniaModel, explainer: Explainer, gray: np.ndarray) -> None:
    """Preprocessing, calibrated prediction and Grad-CAM only: the path every architecture shares (for a gated
    model the gate's features and classifier still come out of the same pass; see `without_gate`)."""
    explainer.predict_and_explain(model.preprocess(gray), "Grad-CAM")


def without_gate(model: PneumoniaModel) -> PneumoniaModel:
    """The same network, calibration and preprocessing with no input gate in its pass: what the random-weight
    architectures compute, so that the comparison weighs the networks alone."""
    return PneumoniaModel(model.keras_model, replace(model.config, gate=None))


def compare_view(model: PneumoniaModel, explainer: Explainer, gray: np.ndarray) -> None:
    """What the lab's compare view computes: preprocessing, input gate and prediction, every method's map of
    the decided class and its overlay."""
    model_input = model.preprocess(gray)
    _, prediction, _ = explainer.gate_predict_and_explain(model_input)
    shown = display_image(gray)
    for timed in explainer.compare(model_input, prediction.label).values():
        overlay_heatmap(shown, timed.heatmap)


def in_process(model: PneumoniaModel, gray: np.ndarray, repeats: int) -> dict:
    """Predict alone, predict plus each explanation method, and the compare view, in milliseconds."""
    explainer = Explainer(model)
    results = {"preprocess": percentiles(timed_ms(lambda: model.preprocess(gray), repeats)),
               "predict": percentiles(timed_ms(lambda: model.predict(gray), repeats))}
    for method in METHODS:
        times = timed_ms(functools.partial(gate_predict_and_explain, model, explainer, gray, method), repeats)
        results[f"predict+{method}"] = percentiles(times)
    results["compare_view_all_methods"] = compare_row(model, explainer, gray, repeats)
    return results


def compare_row(model: PneumoniaModel, explainer: Explainer, gray: np.ndarray, repeats: int) -> dict:
    """The compare view's percentiles, with the target and whether the median meets it."""
    row = percentiles(timed_ms(functools.partial(compare_view, model, explainer, gray), repeats))
    return {**row, "methods": list(METHODS), "target_ms": COMPARE_TARGET_MS,
            "meets_target": row["p50"] <= COMPARE_TARGET_MS}


def random_weights_model(arch: str, like: ModelConfig) -> PneumoniaModel:
    """An untrained architecture wrapped like ours (same input size and preprocessing), explained at its last
    conv layer."""
    keras_model = build_model(arch, like.image_size)
    config = ModelConfig(image_size=like.image_size, gradcam_layer=last_conv_layer_name(keras_model),
                         normalization=like.normalization, band_energies=like.band_energies)
    return PneumoniaModel(keras_model, config)


def architecture_rows(models: dict[str, PneumoniaModel], gray: np.ndarray, repeats: int) -> dict:
    """Size, FLOPs and predict + Grad-CAM time of each architecture through the app's path, timed in
    interleaved rounds."""
    explainers = {name: Explainer(model) for name, model in models.items()}
    calls = {name: functools.partial(explain_without_gate, model, explainers[name], gray)
             for name, model in models.items()}
    times = timed_ms_interleaved(calls, repeats)
    return {name: {"parameters": model.keras_model.count_params(),
                   "mflops": round(count_flops(model.keras_model) / 1e6),
                   "predict+Grad-CAM": percentiles(times[name])} for name, model in models.items()}


def over_http(image: Path, repeats: int) -> dict:
    """Cold start of `python app.py` to its first /predict, then /predict latency through the default
    gradio_client and through one reusing its TLS context, the REST routes, and the app's peak memory."""
    with start_app() as app:
        client = wait_for_client(app)
        arguments = (handle_file(str(image)), None, "Grad-CAM", 0.4, "main")
        client.predict(*arguments, api_name="/predict")
        cold_start = time.perf_counter() - app.started_at
        default_client = new_client(app.url, reuse_tls=False)
        default_times = timed_ms(lambda: default_client.predict(*arguments, api_name="/predict"), repeats)
        reused_tls_times = timed_ms(lambda: client.predict(*arguments, api_name="/predict"), repeats)
        return {"cold_start_s": round(cold_start, 2), "http": percentiles(default_times),
                "http_reused_tls": percentiles(reused_tls_times), "rest": rest_latency(app, image, repeats),
                "app_peak_memory_mb": round(app.peak_memory_mb())}


def rest_latency(app: AppProcess, image: Path, repeats: int) -> dict:
    """POST /v1/classify and /v1/explain with the image bytes through one default httpx client, timed in turns
    with the short /predict through the default gradio_client: a slow spell of the machine hits all alike."""
    data = image.read_bytes()
    predict_client = new_client(app.url, reuse_tls=False)
    with httpx.Client(base_url=app.url) as http:
        times = timed_ms_interleaved({
            "rest_classify": lambda: http.post("/v1/classify", content=data).raise_for_status(),
            "rest_explain": lambda: http.post("/v1/explain", content=data).raise_for_status(),
            "predict_default_client": lambda: predict_client.predict(handle_file(str(image)), api_name="/predict"),
        }, repeats)
    return {name: percentiles(values) for name, values in times.items()}


def rest_only(image: Path, repeats: int) -> dict:
    """The REST routes' latency against a freshly started app, without the rest of the benchmark."""
    with start_app() as app:
        wait_for_rest(app)
        rest = rest_latency(app, image, repeats)
    return {"repeats": repeats, "p50_rest_classify_ms": rest["rest_classify"]["p50"],
            "p95_rest_classify_ms": rest["rest_classify"]["p95"], "p50_rest_explain_ms": rest["rest_explain"]["p50"],
            "p50_predict_default_client_ms": rest["predict_default_client"]["p50"], "rest_ms": rest}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=BUNDLED_MODEL_DIR)
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--rest-only", action="store_true", help="measure only the REST routes over HTTP")
    parser.add_argument("--compare-only", action="store_true", help="measure only the lab's compare view, in-process")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)

    if args.rest_only:
        report(rest_only(args.image, args.repeats), args.json)
        return
    if args.compare_only:
        model = load_model_dir(args.model)
        row = compare_row(model, Explainer(model), read_image_file(args.image), args.repeats)
        report({"model": str(args.model), "image": args.image.name, "repeats": args.repeats,
                "compare_view_all_methods_ms": row}, args.json)
        return
    http = over_http(args.image, args.repeats)  # first, so the cold start is not warmed by this process
    model = load_model_dir(args.model)
    gray = read_image_file(args.image)
    ours = in_process(model, gray, args.repeats)
    size = model.config.image_size
    others = {arch: random_weights_model(arch, model.config) for arch in ("seed_baseline", "DenseNet121")}
    comparison = architecture_rows({"ours": without_gate(model), "ours_with_input_gate": model, **others}, gray,
                                   args.repeats)
    densenet, same_run_ours, gated = (comparison[name]["predict+Grad-CAM"]["p50"]
                                      for name in ("DenseNet121", "ours", "ours_with_input_gate"))
    result = {
        "image_size": size,
        "repeats": args.repeats,
        "normalization": model.config.normalization,
        "p50_preprocess_ms": ours["preprocess"]["p50"],
        "p50_predict_ms": ours["predict"]["p50"],
        "p95_predict_ms": ours["predict"]["p95"],
        "p50_predict_gradcam_ms": ours["predict+Grad-CAM"]["p50"],
        "p95_predict_gradcam_ms": ours["predict+Grad-CAM"]["p95"],
        "p50_compare_view_ms": ours["compare_view_all_methods"]["p50"],
        "p50_http_ms": http["http"]["p50"],
        "p95_http_ms": http["http"]["p95"],
        "p50_http_reused_tls_ms": http["http_reused_tls"]["p50"],
        "p95_http_reused_tls_ms": http["http_reused_tls"]["p95"],
        "p50_rest_classify_ms": http["rest"]["rest_classify"]["p50"],
        "p95_rest_classify_ms": http["rest"]["rest_classify"]["p95"],
        "p50_rest_explain_ms": http["rest"]["rest_explain"]["p50"],
        "cold_start_s": http["cold_start_s"],
        "speedup_vs_densenet121": round(densenet / same_run_ours, 1),  # both timed by architecture_rows
        "speedup_vs_densenet121_with_our_input_gate": round(densenet / gated, 1),
        "app_peak_memory_mb": http["app_peak_memory_mb"],
        "bench_peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "in_process_ms": ours,
        "rest_ms": http["rest"],
        "architectures": comparison,
    }
    report(result, args.json)


if __name__ == "__main__":
    main()
