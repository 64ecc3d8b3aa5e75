"""Hub faults at start and while serving: the app falls back, never loads a corrupt file, loses no request."""

import socket
import threading
import time
from dataclasses import replace

import pytest

from cxr_pneumonia.hub import (
    HubSettings,
    configure_hub_timeouts,
    publish_model_dir,
    resolve_model,
)
from cxr_pneumonia.service import PneumoniaService

REPO = "someone/cxr-model"


@pytest.fixture
def published(hub, tiny_model_dir, tmp_path):
    """The tiny model published as v1.0.0 and v2.0.0; settings pointing at v1.0.0 with a fresh cache."""
    publish_model_dir(HubSettings(repo_id=REPO, endpoint=hub.url), tiny_model_dir, "v1.0.0", "v1.0.0")
    publish_model_dir(HubSettings(repo_id=REPO, endpoint=hub.url), tiny_model_dir, "v2.0.0", "v2.0.0")
    return HubSettings(repo_id=REPO, revision="v1.0.0", endpoint=hub.url, cache_dir=str(tmp_path / "cache"),
                       timeout=1.0, deadline=15.0)


@pytest.fixture(autouse=True, scope="module")
def short_hub_timeouts():
    configure_hub_timeouts(1.0)
    yield
    configure_hub_timeouts()


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def test_refused_connection_falls_back_to_the_bundled_model_quickly(tmp_path):
    settings = HubSettings(repo_id=REPO, endpoint=closed_port_url(), cache_dir=str(tmp_path))
    started = time.perf_counter()
    location = resolve_model(settings)
    assert location.source == "bundled" and "could not be reached" in location.fallback_reason
    assert time.perf_counter() - started < 5


def test_hub_timeout_falls_back_within_a_bounded_time(hub, published):
    hub.faults.delay = 3.0  # every answer takes longer than the 1 s timeout
    started = time.perf_counter()
    location = resolve_model(replace(published, deadline=3.0))
    elapsed = time.perf_counter() - started
    assert location.source == "bundled" and "within 3 s" in location.fallback_reason
    assert elapsed < 4, f"fallback took {elapsed:.1f} s"
    hub.faults.delay = 0.0  # the Hub recovers: the abandoned download finishes in the background
    for thread in threading.enumerate():
        if thread.name == "hub-download":
            thread.join(timeout=60)
    assert resolve_model(published).source == "hub"


def test_hub_outage_falls_back(hub, published):
    hub.faults.outage_status = 503
    assert resolve_model(published).source == "bundled"


@pytest.mark.parametrize("mode", ["flip", "truncate"])
def test_corrupt_download_is_never_loaded(hub, published, mode):
    hub.corrupt("model.keras", mode)
    location = resolve_model(published)
    assert location.source == "bundled"
    assert "corrupt" in location.fallback_reason or "could not be reached" in location.fallback_reason
    hub.reset_faults()
    healed = resolve_model(published)  # the bad copy was dropped from the cache: a retry downloads it again
    assert healed.source == "hub" and healed.commit is not None


def test_offline_setting_never_touches_the_network(hub, published):
    location = resolve_model(replace(published, offline=True))
    assert location.source == "bundled" and "HF_HUB_OFFLINE" in location.fallback_reason
    assert not hub.requests or all("/api/" not in r or "refs" not in r for r in hub.requests[-1:])


def test_switching_versions_while_requests_are_in_flight_loses_nothing(hub, published, mini_data_dir):
    service = PneumoniaService(published)
    image = next((mini_data_dir / "test" / "PNEUMONIA").iterdir())
    hub.faults.delay = 0.05  # slow the v2.0.0 download down, so requests on v1.0.0 overlap with it
    results, errors = [], []

    def user(revision: str, count: int) -> None:
        for _ in range(count):
            try:
                analysis = service.analyze_file(image, revision=revision)
                results.append((revision, analysis.model_info["version"]))
            except Exception as error:
                errors.append(repr(error))

    threads = [threading.Thread(target=user, args=("v1.0.0", 8)) for _ in range(3)]
    threads.append(threading.Thread(target=user, args=("v2.0.0", 3)))
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert len(results) == 3 * 8 + 3
    assert set(results) == {("v1.0.0", "v1.0.0"), ("v2.0.0", "v2.0.0")}
    assert time.perf_counter() - started < 120
