"""Latency benchmark on this machine: our model against DenseNet-121 (CheXNet's architecture) and the
seed baseline, in-process and over HTTP, plus cold start and peak memory.

    .venv/bin/python bench/latency.py --json bench/results/latency.json
"""

from __future__ import annotations

import argparse
import functools
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from gradio_client import handle_file  # noqa: E402

from bench.common import (  # noqa: E402
    new_client,
    percentiles,
    report,
    start_app,
    timed_ms,
    timed_ms_interleaved,
    wait_for_client,
)
from cxr_pneumonia.architectures import build_model, count_flops, last_conv_layer_name  # noqa: E402
from cxr_pneumonia.config import BUNDLED_MODEL_DIR, DEFAULT_DATA_DIR  # noqa: E402
from cxr_pneumonia.explain import METHODS, Explainer  # noqa: E402
from cxr_pneumonia.imaging import read_image_file  # noqa: E402
from cxr_pneumonia.model import ModelConfig, PneumoniaModel, load_model_dir  # noqa: E402

DEFAULT_IMAGE = DEFAULT_DATA_DIR / "test" / "PNEUMONIA" / "person100_bacteria_475.jpg"


def gate_predict_and_explain(model: PneumoniaModel, explainer: Explainer, gray: np.ndarray, method: str) -> None:
    """What one request computes: preprocessing, input gate, calibrated prediction, heatmap of the decided class."""
    explainer.gate_predict_and_explain(model.preprocess(gray), method)


def explain_without_gate(model: PneumoniaModel, explainer: Explainer, gray: np.ndarray) -> None:
    """Preprocessing, calibrated prediction and Grad-CAM only: the path every architecture shares (the
    random-weight ones have no input gate)."""
    explainer.predict_and_explain(model.preprocess(gray), "Grad-CAM")


def in_process(model: PneumoniaModel, gray: np.ndarray, repeats: int) -> dict:
    """Predict alone and predict plus each explanation method, in milliseconds."""
    explainer = Explainer(model)
    results = {"predict": percentiles(timed_ms(lambda: model.predict(gray), repeats))}
    for method in METHODS:
        times = timed_ms(lambda: gate_predict_and_explain(model, explainer, gray, method), repeats)
        results[f"predict+{method}"] = percentiles(times)
    return results


def random_weights_model(arch: str, image_size: int) -> PneumoniaModel:
    """An untrained architecture wrapped like ours, explained at its last conv layer."""
    keras_model = build_model(arch, image_size)
    return PneumoniaModel(keras_model, ModelConfig(image_size=image_size, gradcam_layer=last_conv_layer_name(keras_model)))


def architecture_rows(models: dict[str, PneumoniaModel], gray: np.ndarray, repeats: int) -> dict:
    """Size, FLOPs and predict + Grad-CAM time of each architecture through the app's path, timed in
    interleaved rounds."""
    explainers = {name: Explainer(model) for name, model in models.items()}
    calls = {name: functools.partial(explain_without_gate, model, explainers[name], gray) for name, model in models.items()}
    times = timed_ms_interleaved(calls, repeats)
    return {name: {"parameters": model.keras_model.count_params(), "mflops": round(count_flops(model.keras_model) / 1e6),
                   "predict+Grad-CAM": percentiles(times[name])} for name, model in models.items()}


def over_http(image: Path, repeats: int) -> dict:
    """Cold start of `python app.py` to its first /predict, then /predict latency through the default
    gradio_client and through one reusing its TLS context, and the app's peak memory."""
    app = start_app()
    try:
        client = wait_for_client(app)
        arguments = (handle_file(str(image)), None, "Grad-CAM", 0.4, "main")
        client.predict(*arguments, api_name="/predict")
        cold_start = time.perf_counter() - app.started_at
        default_client = new_client(app.url, reuse_tls=False)
        default_times = timed_ms(lambda: default_client.predict(*arguments, api_name="/predict"), repeats)
        reused_tls_times = timed_ms(lambda: client.predict(*arguments, api_name="/predict"), repeats)
        return {"cold_start_s": round(cold_start, 2), "http": percentiles(default_times),
                "http_reused_tls": percentiles(reused_tls_times), "app_peak_memory_mb": round(app.peak_memory_mb())}
    finally:
        app.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=BUNDLED_MODEL_DIR)
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)

    http = over_http(args.image, args.repeats)  # first, so the cold start is not warmed by this process
    model = load_model_dir(args.model)
    gray = read_image_file(args.image)
    ours = in_process(model, gray, args.repeats)
    size = model.config.image_size
    comparison = architecture_rows({"ours": model, "seed_baseline": random_weights_model("seed_baseline", size),
                                    "DenseNet121": random_weights_model("DenseNet121", size)}, gray, args.repeats)
    densenet, same_run_ours = (comparison[name]["predict+Grad-CAM"]["p50"] for name in ("DenseNet121", "ours"))
    result = {
        "image_size": size,
        "repeats": args.repeats,
        "p50_predict_ms": ours["predict"]["p50"],
        "p95_predict_ms": ours["predict"]["p95"],
        "p50_predict_gradcam_ms": ours["predict+Grad-CAM"]["p50"],
        "p95_predict_gradcam_ms": ours["predict+Grad-CAM"]["p95"],
        "p50_http_ms": http["http"]["p50"],
        "p95_http_ms": http["http"]["p95"],
        "p50_http_reused_tls_ms": http["http_reused_tls"]["p50"],
        "p95_http_reused_tls_ms": http["http_reused_tls"]["p95"],
        "cold_start_s": http["cold_start_s"],
        "speedup_vs_densenet121": round(densenet / same_run_ours, 1),  # both timed by architecture_rows
        "app_peak_memory_mb": http["app_peak_memory_mb"],
        "bench_peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "in_process_ms": ours,
        "architectures": comparison,
    }
    report(result, args.json)


if __name__ == "__main__":
    main()
