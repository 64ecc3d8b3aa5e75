"""Hugging Face Hub access: resolving a model revision to a local directory, listing versions."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass
from pathlib import Path

import httpx2
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    hf_hub_download,
    snapshot_download,
)
from huggingface_hub.errors import EntryNotFoundError, HFValidationError
from huggingface_hub.hf_api import RepoFile
from huggingface_hub.repocard import metadata_load
from huggingface_hub.utils import set_client_factory
from huggingface_hub.utils._http import default_client_factory

from cxr_pneumonia.config import (
    BUNDLED_MODEL_DIR,
    CARD_FILENAME,
    CONFIG_FILENAME,
    DEFAULT_REPO_ID,
    DEFAULT_REVISION,
)

log = logging.getLogger(__name__)

MODEL_FILE_PATTERNS = ["*.keras", "*.json", "*.npz", "*.md", "*.png", "*.csv"]
HUB_TIMEOUT_SECONDS = 5.0  # per HTTP request
HUB_DEADLINE_SECONDS = 10.0  # for a whole model download; past it the bundled model serves
SEMVER_TAG = re.compile(r"^v\d+\.\d+\.\d+$")
HUB_ERRORS = (httpx2.HTTPError, OSError, EntryNotFoundError, HFValidationError, TimeoutError)


@dataclass(frozen=True)
class ModelLocation:
    """Where a model directory came from: the Hub (repo, revision, commit) or the bundled copy."""

    directory: Path
    source: str  # "hub" or "bundled"
    repo_id: str
    revision: str
    commit: str | None = None
    fallback_reason: str | None = None
    fallback_code: str | None = None  # the reason's stable name: offline, timeout, corrupt or unreachable


@dataclass(frozen=True)
class HubSettings:
    """Which model to fetch and how, read from the environment."""

    repo_id: str = DEFAULT_REPO_ID
    revision: str = DEFAULT_REVISION
    token: str | None = None
    endpoint: str | None = None
    offline: bool = False
    cache_dir: str | None = None
    timeout: float = HUB_TIMEOUT_SECONDS
    deadline: float = HUB_DEADLINE_SECONDS

    @classmethod
    def from_environment(cls) -> HubSettings:
        """MODEL_REPO, MODEL_REVISION, HF_TOKEN, HF_ENDPOINT, HF_HUB_OFFLINE and HF_HUB_CACHE."""
        return cls(
            repo_id=os.environ.get("MODEL_REPO") or DEFAULT_REPO_ID,
            revision=os.environ.get("MODEL_REVISION") or DEFAULT_REVISION,
            token=os.environ.get("HF_TOKEN") or None,
            endpoint=os.environ.get("HF_ENDPOINT") or None,
            offline=os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"),
            cache_dir=os.environ.get("HF_HUB_CACHE") or None,
        )


def download_model(settings: HubSettings, revision: str | None = None) -> ModelLocation:
    """Download one revision of the model repo (files of a model directory only)."""
    revision = revision or settings.revision
    path = snapshot_download(
        settings.repo_id,
        revision=revision,
        token=settings.token,
        endpoint=settings.endpoint,
        cache_dir=settings.cache_dir,
        allow_patterns=MODEL_FILE_PATTERNS,
        etag_timeout=settings.timeout,
    )
    directory = Path(path)
    if not (directory / CONFIG_FILENAME).is_file():
        raise FileNotFoundError(f"{settings.repo_id}@{revision} has no {CONFIG_FILENAME}: not a model of this app")
    verify_snapshot(settings, directory)
    return ModelLocation(directory, "hub", settings.repo_id, revision, commit=directory.name)


class CorruptDownloadError(OSError):
    """A downloaded file whose content does not match the Hub's hash for it."""


def verify_snapshot(settings: HubSettings, directory: Path) -> None:
    """Check each downloaded file against the Hub's listing (sha256 of LFS files, git blob sha1 of others).

    A mismatching file is removed from the cache, so it is never loaded and a retry downloads it again.
    """
    listing = hub_api(settings).list_repo_tree(settings.repo_id, revision=directory.name, recursive=True)
    for entry in listing:
        local = directory / entry.path
        if not isinstance(entry, RepoFile) or not local.is_file():
            continue
        content = local.read_bytes()
        if entry.lfs is not None:
            matches = hashlib.sha256(content).hexdigest() == entry.lfs.sha256
        else:
            matches = hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest() == entry.blob_id
        if not matches:
            local.resolve().unlink()
            local.unlink(missing_ok=True)  # the cache's symlink to the blob just removed
            raise CorruptDownloadError(f"{entry.path} at {directory.name[:12]} failed its integrity check")


def configure_hub_timeouts(seconds: float = HUB_TIMEOUT_SECONDS) -> None:
    """Give every Hub call a timeout; huggingface_hub's default HTTP client waits forever on API calls."""

    def client_with_timeout() -> httpx2.Client:
        client = default_client_factory()
        client.timeout = httpx2.Timeout(seconds)
        return client

    set_client_factory(client_with_timeout)


def bundled_model(settings: HubSettings, reason: str, code: str) -> ModelLocation:
    """The model committed in this repository, with the reason the Hub copy was not used (in words, and its code)."""
    return ModelLocation(BUNDLED_MODEL_DIR, "bundled", settings.repo_id, "bundled", fallback_reason=reason,
                         fallback_code=code)


def resolve_model(settings: HubSettings, revision: str | None = None) -> ModelLocation:
    """The requested Hub revision, or the bundled model when the Hub is off or out of reach."""
    if settings.offline:
        return bundled_model(settings, "HF_HUB_OFFLINE is set", "offline")
    try:
        return _within_deadline(lambda: download_model(settings, revision), settings.deadline)
    except FutureTimeoutError:
        # The download goes on in the background and fills the cache for a later attempt.
        return bundled_model(settings, f"the Hub did not deliver the model within {settings.deadline:g} s",
                             "timeout")
    except HUB_ERRORS as error:
        log.warning("Hub model %s@%s unavailable: %s", settings.repo_id, revision or settings.revision, error)
        if isinstance(error, CorruptDownloadError):
            return bundled_model(settings, f"the download was corrupt ({error})", "corrupt")
        return bundled_model(settings, f"the Hub could not be reached or refused the request ({type(error).__name__})",
                             "unreachable")


def _within_deadline(task: Callable[[], ModelLocation], seconds: float) -> ModelLocation:
    """Run `task` on its own daemon thread and wait at most `seconds` for it.

    A thread per download, not a shared pool, so a download stuck on a slow Hub never delays another.
    """
    outcome: Future = Future()

    def run() -> None:
        try:
            outcome.set_result(task())
        except BaseException as error:
            outcome.set_exception(error)

    threading.Thread(target=run, name="hub-download", daemon=True).start()
    return outcome.result(timeout=seconds)


@dataclass(frozen=True)
class Version:
    """A version tag of the model repo."""

    tag: str
    commit: str


def list_versions(settings: HubSettings) -> list[Version]:
    """The repo's version tags (vX.Y.Z), newest version first."""
    refs = hub_api(settings).list_repo_refs(settings.repo_id)
    tags = [Version(tag.name, tag.target_commit) for tag in refs.tags if SEMVER_TAG.match(tag.name)]
    return sorted(tags, key=lambda version: _semver_key(version.tag), reverse=True)


def _semver_key(tag: str) -> tuple[int, ...]:
    return tuple(int(part) for part in tag.lstrip("v").split("."))


def version_of(location: ModelLocation, versions: list[Version]) -> str | None:
    """The requested tag, else a tag naming the location's commit, else the version in its config.json."""
    if location.source == "hub" and any(version.tag == location.revision for version in versions):
        return location.revision
    for version in versions:
        if location.commit and version.commit == location.commit:
            return version.tag
    config = json.loads((location.directory / CONFIG_FILENAME).read_text())
    return config.get("version")


def hub_api(settings: HubSettings) -> HfApi:
    """An HfApi client for the configured endpoint; the token comes from HF_TOKEN or the stored login."""
    return HfApi(endpoint=settings.endpoint, token=settings.token)


def card_test_metrics(settings: HubSettings, revision: str) -> dict[str, float]:
    """Test metrics from the model-index of the card (README.md) at `revision`."""
    path = hf_hub_download(settings.repo_id, CARD_FILENAME, revision=revision, token=settings.token,
                           endpoint=settings.endpoint, cache_dir=settings.cache_dir)
    metadata = metadata_load(path) or {}
    results = (metadata.get("model-index") or [{}])[0].get("results") or [{}]
    return {metric["type"]: float(metric["value"]) for metric in results[0].get("metrics", [])}


@dataclass(frozen=True)
class PublishedVersion:
    """The outcome of publishing: the tag and the commit it points to."""

    tag: str
    commit: str
    commit_url: str


def publish_model_dir(settings: HubSettings, folder: Path, version: str, message: str,
                      private: bool = False) -> PublishedVersion:
    """Make the repo's main hold exactly `folder`, in ONE commit (never split or retried), then tag it."""
    api = hub_api(settings)
    api.create_repo(settings.repo_id, private=private, exist_ok=True)
    local = sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())
    stale = set(api.list_repo_files(settings.repo_id)) - set(local) - {".gitattributes"}
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=folder / name) for name in local]
    operations += [CommitOperationDelete(path_in_repo=name) for name in sorted(stale)]
    commit = api.create_commit(settings.repo_id, operations=operations, commit_message=message)
    api.create_tag(settings.repo_id, tag=version, revision=commit.oid, tag_message=message)
    return PublishedVersion(version, commit.oid, commit.commit_url)
