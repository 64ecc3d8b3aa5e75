"""The benchmarks' timing helper: every function timed every round, none always right after the same one."""

from bench.common import timed_ms_interleaved


def test_interleaved_rounds_rotate_the_order():
    calls: list[str] = []
    functions = {name: (lambda name=name: calls.append(name)) for name in ("small", "other", "large")}
    times = timed_ms_interleaved(functions, repeats=3, warmup=1)
    assert {name: len(values) for name, values in times.items()} == {"small": 3, "other": 3, "large": 3}
    assert all(value >= 0 for values in times.values() for value in values)
    rounds = calls[3:]  # after one warm-up call each
    assert rounds == ["small", "other", "large", "other", "large", "small", "large", "small", "other"]
