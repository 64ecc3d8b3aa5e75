"""Load test: N concurrent gradio_client users, or N REST users, against `python app.py` on 127.0.0.1.

Measures back-to-back throughput of one user first, then N users for a bounded time, in one run:
    .venv/bin/python bench/load.py --users 16 --seconds 60 --json bench/results/load.json
With --sweep, N users against the app at each CONCURRENCY_LIMIT given, to choose the app's default:
    .venv/bin/python bench/load.py --users 16 --seconds 30 --sweep 1 2 4 8 --json bench/results/load_sweep.json
The clients share one TLS context (bench.common.shared_tls_context) unless --default-tls: they run on the
same cores as the app, and the default client's per-call TLS set-up would be measured as load.

With --rest, N connections POST the image to /v1/classify, driven by wrk (`apt-get install wrk`: compiled and
event-driven, so it takes little of the cores the app runs on) or, without it, by async httpx. Rounds of
in-process `analyze_file`, one REST user and N REST users alternate, so a slow spell of a shared machine hits
each alike; the app's CPU per request is set against `analyze_file`'s CPU per call in this process:
    .venv/bin/python bench/load.py --rest --users 16 --seconds 20 --rounds 3 --json bench/results/load_rest.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from gradio_client import handle_file

from bench.common import (
    AppProcess,
    back_to_back,
    new_client,
    percentiles,
    report,
    start_app,
    wait_for_client,
    wait_for_rest,
)
from bench.latency import DEFAULT_IMAGE

WRK_SCRIPT = Path(__file__).with_name("wrk_post.lua")
REST_ROUTE = "v1/classify"


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
            except Exception as error:  # every failure is counted and reported
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
    return {f"{name}_rps": round(back_to_back(call, seconds).calls_per_second, 2) for name, call in calls.items()}


def loaded_app(image: Path, users: int, seconds: float, concurrency_limit: int | None, reuse_tls: bool,
               with_one_user: bool) -> dict:
    """Start the app (at `concurrency_limit`, default the app's), warm it, then one user and N users."""
    env = {"CONCURRENCY_LIMIT": str(concurrency_limit)} if concurrency_limit else {}
    with start_app(env) as app:
        wait_for_client(app).predict(handle_file(str(image)), None, "Grad-CAM", 0.4, "main", api_name="/predict")
        result = {"concurrency_limit": concurrency_limit or "app default"}
        if with_one_user:
            result["one_user"] = run_users(app, image, 1, seconds, reuse_tls)
        result["concurrent"] = run_users(app, image, users, seconds, reuse_tls)
        return result


def rest_load(image: Path, users: int, seconds: float, rounds: int) -> dict:
    """Rounds of in-process analyze_file, one REST user and `users` REST users, each for `seconds`; the ratios
    of the app's CPU per request and throughput under load to analyze_file's, per round and their medians."""
    from cxr_pneumonia.hub import HubSettings
    from cxr_pneumonia.service import PneumoniaService

    service = PneumoniaService(HubSettings(offline=True))
    with start_app() as app:
        wait_for_rest(app)
        httpx.post(f"{app.url}{REST_ROUTE}", content=image.read_bytes(), timeout=60).raise_for_status()
        rows = []
        for _ in range(rounds):
            in_process = analyze_file_cost(service, image, seconds)
            one, many = rest_users(app, image, 1, seconds), rest_users(app, image, users, seconds)
            rows.append({
                "in_process": in_process, "one_user": one, "concurrent": many,
                "cpu_ratio_vs_in_process": round(many["app_cpu_ms_per_request"] / in_process["cpu_ms_per_call"], 2),
                "throughput_ratio_vs_in_process": round(many["throughput_rps"] / in_process["calls_per_second"], 2),
            })
    return {
        "route": f"/{REST_ROUTE}", "users": users, "seconds": seconds, "cores": os.cpu_count(),
        "errors": sum(row["one_user"]["errors"] + row["concurrent"]["errors"] for row in rows),
        "median_cpu_ratio_vs_in_process": statistics.median(row["cpu_ratio_vs_in_process"] for row in rows),
        "median_throughput_ratio_vs_in_process": statistics.median(
            row["throughput_ratio_vs_in_process"] for row in rows),
        "rounds": rows,
    }


def analyze_file_cost(service, image: Path, seconds: float) -> dict[str, float]:
    """service.analyze_file back to back in this process: calls per second, and CPU per call (all threads)."""
    run = back_to_back(lambda: service.analyze_file(image), seconds)
    return {"calls_per_second": round(run.calls_per_second, 2), "cpu_ms_per_call": round(run.cpu_ms_per_call, 2)}


def rest_users(app: AppProcess, image: Path, users: int, seconds: float) -> dict:
    """`users` connections posting the image to /v1/classify back to back for `seconds` (wrk if installed, else
    async httpx), with the app's CPU time per request."""
    cpu_started = app.cpu_seconds()
    run = wrk_users if shutil.which("wrk") else httpx_users
    result = run(f"{app.url}{REST_ROUTE}", image, users, seconds)
    cpu_ms = (app.cpu_seconds() - cpu_started) * 1000 / max(result["requests"], 1)
    return {"users": users, **result, "app_cpu_ms_per_request": round(cpu_ms, 2)}


def wrk_users(url: str, image: Path, users: int, seconds: float) -> dict:
    """The load from wrk, one thread holding `users` connections; its summary comes from wrk_post.lua."""
    command = ["wrk", "-t1", f"-c{users}", f"-d{seconds:g}s", "--timeout", "30s", "-s", str(WRK_SCRIPT), url]
    output = subprocess.run(command, env={**os.environ, "WRK_BODY_FILE": str(image)}, capture_output=True,
                            text=True, check=True).stdout
    summary = json.loads(output.strip().splitlines()[-1])
    elapsed = summary["duration_us"] / 1e6
    return {
        "load_generator": "wrk", "seconds": round(elapsed, 1), "requests": summary["requests"],
        "errors": summary["non_2xx"] + summary["socket_errors"],
        "throughput_rps": round(summary["requests"] / elapsed, 2),
        "latency_ms": {name: round(value / 1000, 1) for name, value in summary["latency_us"].items()},
    }


def httpx_users(url: str, image: Path, users: int, seconds: float) -> dict:
    """The same load from `users` asyncio tasks sharing one httpx.AsyncClient."""
    data = image.read_bytes()
    latencies: list[float] = []
    errors: list[str] = []

    async def user(client: httpx.AsyncClient, deadline: float) -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                (await client.post(url, content=data)).raise_for_status()
            except httpx.HTTPError as error:
                errors.append(f"{type(error).__name__}: {error}"[:200])
                continue
            latencies.append((time.perf_counter() - started) * 1000)

    async def run() -> float:
        started = time.perf_counter()
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=users)) as client:
            await asyncio.gather(*(user(client, started + seconds) for _ in range(users)))
        return time.perf_counter() - started

    elapsed = asyncio.run(run())
    return {
        "load_generator": "httpx", "seconds": round(elapsed, 1), "requests": len(latencies) + len(errors),
        "errors": len(errors), "error_samples": errors[:5], "throughput_rps": round(len(latencies) / elapsed, 2),
        "latency_ms": percentiles(latencies) if latencies else {},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each phase")
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--concurrency-limit", type=int, help="CONCURRENCY_LIMIT for the app (default: the app's)")
    parser.add_argument("--sweep", type=int, nargs="+", help="measure N users at each of these CONCURRENCY_LIMITs")
    parser.add_argument("--default-tls", action="store_true", help="default gradio_client (a TLS context per call)")
    parser.add_argument("--rest", action="store_true", help="load the REST route /v1/classify instead of /predict")
    parser.add_argument("--rounds", type=int, default=2, help="with --rest: alternating rounds to measure")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    reuse_tls = not args.default_tls

    if args.rest:
        report(rest_load(args.image, args.users, args.seconds, args.rounds), args.json)
        return

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
