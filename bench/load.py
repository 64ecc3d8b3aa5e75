"""Load test: N concurrent gradio_client users against `python app.py` on 127.0.0.1.

Measures back-to-back throughput of one user first, then N users for a bounded time, in one run:
    .venv/bin/python bench/load.py --users 16 --seconds 60 --json bench/results/load.json
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gradio_client import Client, handle_file  # noqa: E402

from bench.common import percentiles, report, start_app, wait_for_client  # noqa: E402
from bench.latency import DEFAULT_IMAGE  # noqa: E402


def run_users(url: str, image: Path, users: int, seconds: float) -> dict:
    """`users` threads, each with its own client, sending /predict back to back until time is up."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def user() -> None:
        client = Client(url, verbose=False)
        arguments = (handle_file(str(image)), None, "Grad-CAM", 0.4, "main")
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                client.predict(*arguments, api_name="/predict")
            except Exception as error:  # noqa: BLE001 - every failure is counted and reported
                with lock:
                    errors.append(f"{type(error).__name__}: {error}"[:200])
                continue
            with lock:
                latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    threads = [threading.Thread(target=user) for _ in range(users)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return {
        "users": users,
        "seconds": round(elapsed, 1),
        "requests": len(latencies),
        "errors": len(errors),
        "error_samples": errors[:5],
        "throughput_rps": round(len(latencies) / elapsed, 2),
        "latency_ms": percentiles(latencies) if latencies else {},
    }


def back_to_back_rps(image: Path, seconds: float) -> float:
    """Requests per second one process computes (predict + Grad-CAM) back to back, without HTTP."""
    from bench.latency import predict_and_explain
    from cxr_pneumonia.config import BUNDLED_MODEL_DIR
    from cxr_pneumonia.explain import Explainer
    from cxr_pneumonia.imaging import read_image_file
    from cxr_pneumonia.model import load_model_dir

    model = load_model_dir(BUNDLED_MODEL_DIR)
    explainer, gray = Explainer(model), read_image_file(image)
    predict_and_explain(model, explainer, gray, "Grad-CAM")
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        predict_and_explain(model, explainer, gray, "Grad-CAM")
        count += 1
    return count / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each phase")
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--concurrency-limit", type=int, help="CONCURRENCY_LIMIT for the app (default: the app's)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    in_process = back_to_back_rps(args.image, min(args.seconds, 20.0))
    env = {"CONCURRENCY_LIMIT": str(args.concurrency_limit)} if args.concurrency_limit else {}
    app = start_app(env)
    try:
        wait_for_client(app).predict(handle_file(str(args.image)), None, "Grad-CAM", 0.4, "main", api_name="/predict")
        single = run_users(app.url, args.image, 1, args.seconds)
        loaded = run_users(app.url, args.image, args.users, args.seconds)
    finally:
        app.stop()
    result = {
        "concurrency_limit": args.concurrency_limit or "app default",
        "one_user": single,
        "concurrent": loaded,
        "in_process_back_to_back_rps": round(in_process, 2),
        "ratio_vs_one_user": round(loaded["throughput_rps"] / single["throughput_rps"], 2),
        "ratio_vs_in_process": round(loaded["throughput_rps"] / in_process, 2),
    }
    report(result, args.json)


if __name__ == "__main__":
    main()
