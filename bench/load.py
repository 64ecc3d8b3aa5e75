"""Load test: N concurrent gradio_client users against `python app.py` on 127.0.0.1.

Measures back-to-back throughput of one user first, then N users for a bounded time, in one run:
    .venv/bin/python bench/load.py --users 16 --seconds 60 --json bench/results/load.json
With --sweep, N users against the app at each CONCURRENCY_LIMIT given, to choose the app's default:
    .venv/bin/python bench/load.py --users 16 --seconds 30 --sweep 1 2 4 8 --json bench/results/load_sweep.json
The clients share one TLS context (bench.common.shared_tls_context) unless --default-tls: they run on the
same cores as the app, and the default client's per-call TLS set-up would be measured as load.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gradio_client import handle_file  # noqa: E402

from bench.common import AppProcess, new_client, percentiles, report, start_app, wait_for_client  # noqa: E402
from bench.latency import DEFAULT_IMAGE  # noqa: E402


def run_users(app: AppProcess, image: Path, users: int, seconds: float, reuse_tls: bool = True) -> dict:
    """`users` threads, each with its own client, sending /predict back to back until time is up; with the
    app's CPU time per request, which says what the app could serve if the clients ran elsewhere."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def user() -> None:
        client = new_client(app.url, reuse_tls)
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

    started, cpu_started, threads_started = time.perf_counter(), app.cpu_seconds(), app.thread_cpu_seconds()
    threads = [threading.Thread(target=user) for _ in range(users)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    app_cpu_ms = (app.cpu_seconds() - cpu_started) * 1000 / max(len(latencies), 1)
    # In our runs the busiest thread was the server's event loop (py-spy dump): one thread, so at most
    # 1000 / its milliseconds per request can be served, however many cores there are.
    busiest_ms = max(seconds - threads_started.get(thread, 0.0)
                     for thread, seconds in app.thread_cpu_seconds().items()) * 1000 / max(len(latencies), 1)
    return {
        "users": users,
        "seconds": round(elapsed, 1),
        "requests": len(latencies),
        "errors": len(errors),
        "error_samples": errors[:5],
        "throughput_rps": round(len(latencies) / elapsed, 2),
        "latency_ms": percentiles(latencies) if latencies else {},
        "app_cpu_ms_per_request": round(app_cpu_ms, 1),
        "cores": os.cpu_count(),
        "app_capacity_rps_if_alone": round(os.cpu_count() * 1000 / app_cpu_ms, 1) if latencies else None,
        "busiest_thread_cpu_ms_per_request": round(busiest_ms, 1),
        "busiest_thread_bound_rps": round(1000 / busiest_ms, 1) if busiest_ms > 0 else None,
    }


def back_to_back_rps(image: Path, seconds: float) -> dict[str, float]:
    """Requests per second one process computes back to back without HTTP: the model's part (gate, predict,
    Grad-CAM) and the whole request (decode the file, that, and the overlay) through the app's service."""
    from bench.latency import gate_predict_and_explain
    from cxr_pneumonia.hub import HubSettings
    from cxr_pneumonia.imaging import read_image_file
    from cxr_pneumonia.service import PneumoniaService

    service = PneumoniaService(HubSettings(offline=True))
    loaded, gray = service.default, read_image_file(image)
    calls = {
        "predict_gradcam": lambda: gate_predict_and_explain(loaded.model, loaded.explainer, gray, "Grad-CAM"),
        "analyze_file": lambda: service.analyze_file(image),
    }
    return {f"{name}_rps": round(calls_per_second(call, seconds), 2) for name, call in calls.items()}


def calls_per_second(call: Callable[[], object], seconds: float) -> float:
    """How many times `call` runs per second back to back, after one warm-up call."""
    call()
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        call()
        count += 1
    return count / (time.perf_counter() - started)


def loaded_app(image: Path, users: int, seconds: float, concurrency_limit: int | None, reuse_tls: bool,
               with_one_user: bool) -> dict:
    """Start the app (at `concurrency_limit`, default the app's), warm it, then one user and N users."""
    env = {"CONCURRENCY_LIMIT": str(concurrency_limit)} if concurrency_limit else {}
    app = start_app(env)
    try:
        wait_for_client(app).predict(handle_file(str(image)), None, "Grad-CAM", 0.4, "main", api_name="/predict")
        result = {"concurrency_limit": concurrency_limit or "app default"}
        if with_one_user:
            result["one_user"] = run_users(app, image, 1, seconds, reuse_tls)
        result["concurrent"] = run_users(app, image, users, seconds, reuse_tls)
        return result
    finally:
        app.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each phase")
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--concurrency-limit", type=int, help="CONCURRENCY_LIMIT for the app (default: the app's)")
    parser.add_argument("--sweep", type=int, nargs="+", help="measure N users at each of these CONCURRENCY_LIMITs")
    parser.add_argument("--default-tls", action="store_true", help="default gradio_client (a TLS context per call)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    reuse_tls = not args.default_tls

    in_process = back_to_back_rps(args.image, min(args.seconds, 20.0))
    if args.sweep:
        runs = [loaded_app(args.image, args.users, args.seconds, limit, reuse_tls, with_one_user=False)
                for limit in args.sweep]
        report({"users": args.users, "reuse_tls": reuse_tls, "in_process_back_to_back": in_process,
                "by_concurrency_limit": runs}, args.json)
        return
    run = loaded_app(args.image, args.users, args.seconds, args.concurrency_limit, reuse_tls, with_one_user=True)
    single, loaded = run["one_user"], run["concurrent"]
    result = {
        **run,
        "reuse_tls": reuse_tls,
        "in_process_back_to_back": in_process,
        "ratio_vs_one_user": round(loaded["throughput_rps"] / single["throughput_rps"], 2),
        **{f"ratio_vs_in_process_{name.removesuffix('_rps')}": round(loaded["throughput_rps"] / rps, 3)
           for name, rps in in_process.items()},
    }
    report(result, args.json)


if __name__ == "__main__":
    main()
