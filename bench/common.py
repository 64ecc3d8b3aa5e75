"""Helpers shared by the benchmarks: timing, percentiles, calls back to back, and the app in a subprocess."""

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
from typing import TypeVar

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


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


@dataclass(frozen=True)
class BackToBack:
    """How a function fared called back to back for a while in this process."""

    calls: int
    seconds: float
    cpu_seconds: float  # this process's, all threads

    @property
    def calls_per_second(self) -> float:
        return self.calls / self.seconds

    @property
    def cpu_ms_per_call(self) -> float:
        return self.cpu_seconds * 1000 / self.calls


def back_to_back(call: Callable[[], object], seconds: float) -> BackToBack:
    """Call `call` back to back for `seconds`, after one warm-up call."""
    call()
    count, started, cpu_started = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - started < seconds:
        call()
        count += 1
    return BackToBack(count, time.perf_counter() - started, time.process_time() - cpu_started)


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

    def __enter__(self) -> AppProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

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
    """Start the app offline (bundled model) on a free port; returns at once, before it serves. As a context
    manager (`with start_app() as app:`), the app is stopped on leaving."""
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


def wait_until_up(app: AppProcess, attempt: Callable[[], T | None], not_up_yet: tuple[type[Exception], ...],
                  pause: float, timeout: float = 180.0) -> T:
    """What `attempt` returns once it returns something: None, or one of the `not_up_yet` exceptions, means the app
    does not answer yet. Raises if the app exits or `timeout` seconds pass first."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if app.process.poll() is not None:
            raise RuntimeError(f"app exited with code {app.process.returncode}")
        try:
            result = attempt()
        except not_up_yet:
            result = None
        if result is not None:
            return result
        time.sleep(pause)
    raise TimeoutError("the app did not start in time")


def wait_for_rest(app: AppProcess, timeout: float = 180.0) -> None:
    """Return once the app's REST API answers GET /v1/model."""
    import httpx

    def answers() -> bool | None:
        return httpx.get(f"{app.url}v1/model", timeout=5).status_code == 200 or None

    wait_until_up(app, answers, (httpx.HTTPError,), pause=0.2, timeout=timeout)


def wait_for_client(app: AppProcess, timeout: float = 180.0):
    """A gradio_client Client (shared TLS context) once the app answers."""
    return wait_until_up(app, lambda: new_client(app.url), (Exception,), pause=0.1, timeout=timeout)
