"""The benchmarks' helpers: interleaved timing (every function timed every round, none always right after the same
one), calls back to back, and waiting for the app to answer."""

from types import SimpleNamespace

import pytest

from bench.common import back_to_back, timed_ms_interleaved, wait_until_up


def test_interleaved_rounds_rotate_the_order():
    calls: list[str] = []
    functions = {name: (lambda name=name: calls.append(name)) for name in ("small", "other", "large")}
    times = timed_ms_interleaved(functions, repeats=3, warmup=1)
    assert {name: len(values) for name, values in times.items()} == {"small": 3, "other": 3, "large": 3}
    assert all(value >= 0 for values in times.values() for value in values)
    rounds = calls[3:]  # after one warm-up call each
    assert rounds == ["small", "other", "large", "other", "large", "small", "large", "small", "other"]


def test_back_to_back_counts_the_calls_after_one_warm_up():
    calls: list[int] = []
    run = back_to_back(lambda: calls.append(1), seconds=0.05)
    assert len(calls) == run.calls + 1 and run.calls > 0
    assert run.calls_per_second == run.calls / run.seconds and run.cpu_ms_per_call >= 0


def test_waiting_for_the_app_retries_until_it_answers_and_stops_when_it_exits():
    running = SimpleNamespace(process=SimpleNamespace(poll=lambda: None, returncode=None))
    answers = iter([ConnectionError("refused"), None, "client"])

    def attempt():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert wait_until_up(running, attempt, (ConnectionError,), pause=0) == "client"
    with pytest.raises(ValueError):  # not a sign that the app is still starting
        wait_until_up(running, lambda: int("x"), (ConnectionError,), pause=0)
    exited = SimpleNamespace(process=SimpleNamespace(poll=lambda: 1, returncode=1))
    with pytest.raises(RuntimeError, match="exited with code 1"):
        wait_until_up(exited, attempt, (ConnectionError,), pause=0)
