"""Helpers shared by the benchmarks: timing, percentiles and starting the app in a subprocess."""

from __future__ import annotations

import functools
import json
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent


def timed_ms(function: Callable[[], object], repeats: int, warmup: int = 3) -> list[float]:
    """Wall times in milliseconds of `repeats` calls, after `warmup` untimed calls."""
    return timed_ms_interleaved({"function": function}, repeats, warmup)["function"]


def timed_ms_interleaved(functions: dict[str, Callable[[], object]], repeats: int, warmup: int = 3
                         ) -> dict[str, list[float]]:
    """Wall times in milliseconds of each function, called in turn round after round: a slow spell of a
    shared machine then hits every function alike, which keeps their ratio honest. Each round starts one
    function further on, so that none always runs right after the same one (a large model leaves the caches
    cold for whatever follows it)."""
    for function in functions.values():
        for _ in range(warmup):
            function()
    times: dict[str, list[float]] = {name: [] for name in functions}
    names = list(functions)
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            functions[name]()
            times[name].append((time.perf_counter() - started) * 1000)
    return times


def percentiles(times: list[float]) -> dict[str, float]:
    """Median, 95th and 99th percentile, rounded to 0.1."""
    return {f"p{q}": round(float(np.percentile(times, q)), 1) for q in (50, 95, 99)}


def report(result: dict, path: Path | None) -> None:
    """Print a benchmark's result as JSON and write it to `path` when given."""
    text = json.dumps(result, indent=2)
    print(text)
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class AppProcess:
    """`python app.py` running on 127.0.0.1 in a subprocess."""

    process: subprocess.Popen
    url: str
    started_at: float

    def peak_memory_mb(self) -> float:
        """The process's peak resident memory (VmHWM) in MB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_seconds(self) -> float:
        """User plus system CPU time the app process has used so far, all threads."""
        return _cpu_seconds(Path(f"/proc/{self.process.pid}/stat"))

    def thread_cpu_seconds(self) -> dict[str, float]:
        """CPU time so far of each of the app's threads, by thread id."""
        seconds = {}
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            try:
                seconds[task.name] = _cpu_seconds(task / "stat")
            except OSError:  # the thread ended meanwhile
                continue
        return seconds

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _cpu_seconds(stat: Path) -> float:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def start_app(extra_env: dict[str, str] | None = None, log_path: Path | None = None) -> AppProcess:
    """Start the app offline (bundled model) on a free port; returns at once, before it serves."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_SERVER_NAME": "127.0.0.1",
           "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False", **(extra_env or {})}
    log = open(log_path, "w") if log_path else subprocess.DEVNULL
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "app.py"], cwd=REPO_ROOT, env=env, stdout=log, stderr=log)
    return AppProcess(process, f"http://127.0.0.1:{port}/", started)


@functools.cache
def shared_tls_context() -> ssl.SSLContext:
    """One verifying TLS context for all of a client's calls. gradio_client makes a new httpx client per
    HTTP call, and httpx builds a TLS context each time (loading the CA bundle: 30-60 ms here), even for
    http:// URLs; a /predict makes five calls."""
    return ssl.create_default_context()


def new_client(url: str, reuse_tls: bool = True):
    """A gradio_client Client, with the shared TLS context unless `reuse_tls` is False (the default client)."""
    from gradio_client import Client

    return Client(url, verbose=False, ssl_verify=shared_tls_context() if reuse_tls else True)


def wait_for_rest(app: AppProcess, timeout: float = 180.0) -> None:
    """Return once the app's REST API answers GET /v1/model."""
    import httpx

    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if app.process.poll() is not None:
            raise RuntimeError(f"app exited with code {app.process.returncode}")
        try:
            if httpx.get(f"{app.url}v1/model", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:  # not up yet
            pass
        time.sleep(0.2)
    raise TimeoutError("the app did not start in time")


def wait_for_client(app: AppProcess, timeout: float = 180.0):
    """A gradio_client Client (shared TLS context) once the app answers."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if app.process.poll() is not None:
            raise RuntimeError(f"app exited with code {app.process.returncode}")
        try:
            return new_client(app.url)
        except Exception:  # not up yet
            time.sleep(0.1)
    raise TimeoutError("the app did not start in time")
