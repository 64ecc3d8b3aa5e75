"""The test Hub server against the real huggingface_hub client: push, tag, list, download, injected faults."""

import hashlib
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import httpx2
import pytest
from huggingface_hub import (
    GitRefs,
    HfApi,
    get_hf_file_metadata,
    hf_hub_download,
    hf_hub_url,
    snapshot_download,
)
from huggingface_hub.errors import (
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from tests.hub_server import HubServer, hub_server_fixture

REPO_ID = "cxr-demo/test-model"
ROOT = Path(__file__).resolve().parent.parent
V1 = {
    "README.md": b"---\nlicense: mit\n---\n# CXR model v1\n",
    "config.json": b'{"version": "v1.0.0"}',
    "model.keras": b"PK\x03\x04\x00" + bytes(range(256)) * 8,
    "assets/labels.txt": b"NORMAL\nPNEUMONIA\n",
}
V2 = {**V1, "README.md": b"# CXR model v2\n", "config.json": b'{"version": "v2.0.0"}', "model.keras": b"\x00v2" * 500}

hub = pytest.fixture(hub_server_fixture, scope="module", name="hub")


@pytest.fixture(autouse=True)
def clear_faults(hub: HubServer):
    """Each test starts without injected faults."""
    hub.reset_faults()


@pytest.fixture(scope="module")
def api(hub: HubServer) -> HfApi:
    """The real client, anonymous, pointed at the test server."""
    return HfApi(endpoint=hub.url, token=False)


def write_folder(folder: Path, files: dict[str, bytes]) -> Path:
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    return folder


def read_folder(folder: str | Path) -> dict[str, bytes]:
    root = Path(folder)
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in root.rglob("*") if path.is_file()}


@pytest.fixture(scope="module")
def versions(api: HfApi, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """REPO_ID with V1 tagged v1.0.0 and V2 tagged v2.0.0, pushed by upload_folder: tag -> commit sha."""
    api.create_repo(REPO_ID)
    shas = {}
    for tag, files in (("v1.0.0", V1), ("v2.0.0", V2)):
        folder = write_folder(tmp_path_factory.mktemp(tag), files)
        shas[tag] = api.upload_folder(repo_id=REPO_ID, folder_path=folder, commit_message=f"Release {tag}").oid
        api.create_tag(REPO_ID, tag=tag, revision=shas[tag], tag_message=f"Release {tag}")
    return shas


def refs_and_commits(api: HfApi, repo_id: str = REPO_ID) -> tuple[GitRefs, list[str]]:
    """What a failed push must leave untouched."""
    return api.list_repo_refs(repo_id), [commit.commit_id for commit in api.list_repo_commits(repo_id)]


def test_create_repo_is_idempotent_with_exist_ok(api: HfApi, versions: dict[str, str]):
    assert api.create_repo(REPO_ID, exist_ok=True).repo_id == REPO_ID
    with pytest.raises(HfHubHTTPError) as error:
        api.create_repo(REPO_ID)
    assert error.value.response.status_code == 409


def test_refs_list_both_tags_and_main(api: HfApi, versions: dict[str, str]):
    refs = api.list_repo_refs(REPO_ID)
    assert {tag.name: tag.target_commit for tag in refs.tags} == versions
    assert [(branch.name, branch.target_commit) for branch in refs.branches] == [("main", versions["v2.0.0"])]


def test_commits_are_listed_newest_first(api: HfApi, versions: dict[str, str]):
    commits = api.list_repo_commits(REPO_ID)
    assert [commit.commit_id for commit in commits[:2]] == [versions["v2.0.0"], versions["v1.0.0"]]
    assert [commit.title for commit in commits] == ["Release v2.0.0", "Release v1.0.0", "initial commit"]


@pytest.mark.parametrize(("tag", "files"), [("v1.0.0", V1), ("v2.0.0", V2)])
def test_snapshot_download_of_a_tag(hub: HubServer, versions: dict[str, str], tmp_path: Path, tag: str, files: dict):
    path = snapshot_download(REPO_ID, revision=tag, endpoint=hub.url, cache_dir=tmp_path, token=False)
    assert read_folder(path) == files
    assert Path(path).name == versions[tag]


def test_hf_hub_download_at_a_commit_sha(hub: HubServer, versions: dict[str, str], tmp_path: Path):
    kwargs = {"endpoint": hub.url, "cache_dir": tmp_path, "token": False}
    path = hf_hub_download(REPO_ID, "config.json", revision=versions["v1.0.0"], **kwargs)
    assert Path(path).read_bytes() == V1["config.json"]
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download(REPO_ID, "missing.txt", revision=versions["v1.0.0"], **kwargs)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO_ID, "config.json", revision="refs/pr/1", **kwargs)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("cxr-demo/missing", "config.json", **kwargs)


def test_model_info_and_tree_describe_a_revision(api: HfApi, versions: dict[str, str]):
    info = api.model_info(REPO_ID, revision="refs/tags/v1.0.0")
    assert info.sha == versions["v1.0.0"]
    assert sorted(sibling.rfilename for sibling in info.siblings) == sorted(V1)
    tree = {entry.path: entry for entry in api.list_repo_tree(REPO_ID, revision="v1.0.0", recursive=True)}
    assert set(tree) == set(V1) | {"assets"}
    assert tree["model.keras"].lfs.sha256 == hashlib.sha256(V1["model.keras"]).hexdigest()  # binary: shown as LFS
    assert tree["config.json"].lfs is None
    assert [entry.path for entry in api.list_repo_tree(REPO_ID, "assets", revision="v1.0.0")] == ["assets/labels.txt"]


def test_duplicate_tag_raises_and_tags_can_be_deleted(api: HfApi, versions: dict[str, str]):
    with pytest.raises(HfHubHTTPError, match="already exists") as error:
        api.create_tag(REPO_ID, tag="v1.0.0", revision=versions["v2.0.0"])
    assert error.value.response.status_code == 409
    api.create_tag(REPO_ID, tag="scratch", revision="main")
    api.delete_tag(REPO_ID, tag="scratch")
    assert {tag.name for tag in api.list_repo_refs(REPO_ID).tags} == set(versions)


def test_pushing_unchanged_files_creates_no_commit(api: HfApi, versions: dict[str, str], tmp_path: Path):
    before = refs_and_commits(api)
    info = api.upload_folder(repo_id=REPO_ID, folder_path=write_folder(tmp_path, V2), commit_message="same again")
    assert info.oid == versions["v2.0.0"]
    assert refs_and_commits(api) == before


@pytest.mark.parametrize("mode", ["disconnect", "error"])
def test_commit_failing_midway_raises_and_stores_nothing(hub: HubServer, api: HfApi, versions: dict, mode: str):
    before = refs_and_commits(api)
    hub.fail_next_commit(mode)
    with pytest.raises(httpx2.HTTPError):  # HfHubHTTPError for "error", a transport error for "disconnect"
        api.upload_file(path_or_fileobj=b"new", path_in_repo="extra.txt", repo_id=REPO_ID, commit_message="x")
    assert refs_and_commits(api) == before
    assert hub.faults.commit_failures == 0


def test_upload_folder_retries_a_dropped_commit_once(hub: HubServer, api: HfApi, tmp_path: Path):
    api.create_repo("cxr-demo/retried")
    hub.fail_next_commit("disconnect")
    info = api.upload_folder(repo_id="cxr-demo/retried", folder_path=write_folder(tmp_path, V1), commit_message="v1")
    _, commits = refs_and_commits(api, "cxr-demo/retried")
    assert commits[0] == info.oid and len(commits) == 2  # the dropped attempt left nothing behind
    commit_requests = [request for request in hub.requests if "/retried/commit/" in request]
    assert commit_requests == ["POST /api/models/cxr-demo/retried/commit/main"] * 2


def test_outage_fails_fast_and_cached_revisions_still_resolve(hub: HubServer, api: HfApi, versions: dict, tmp_path):
    kwargs = {"endpoint": hub.url, "cache_dir": tmp_path / "warm", "token": False}
    cached = snapshot_download(REPO_ID, revision="v1.0.0", **kwargs)
    hub.faults.outage_status = 503
    started = time.monotonic()
    with pytest.raises(HfHubHTTPError):
        api.list_repo_refs(REPO_ID)
    with pytest.raises(HfHubHTTPError):
        api.model_info(REPO_ID)
    with pytest.raises(LocalEntryNotFoundError):
        snapshot_download(REPO_ID, revision="v1.0.0", **{**kwargs, "cache_dir": tmp_path / "cold"})
    assert snapshot_download(REPO_ID, revision="v1.0.0", **kwargs) == cached
    assert time.monotonic() - started < 2
    requests_so_far = len(hub.requests)
    assert snapshot_download(REPO_ID, revision=versions["v1.0.0"], **kwargs) == cached  # a cached sha: no request
    assert len(hub.requests) == requests_so_far


def test_delay_makes_client_time_out(hub: HubServer, api: HfApi, versions: dict[str, str]):
    hub.faults.delay = 1.0
    with pytest.raises(httpx2.TimeoutException):
        api.model_info(REPO_ID, timeout=0.2)


def test_corrupted_downloads(hub: HubServer, versions: dict[str, str], tmp_path: Path):
    kwargs = {"revision": versions["v1.0.0"], "endpoint": hub.url, "token": False}
    hub.corrupt("config.json", "truncate")
    with pytest.raises(OSError, match="Consistency check failed"):
        hf_hub_download(REPO_ID, "config.json", cache_dir=tmp_path, **kwargs)
    hub.corrupt("model.keras", "flip")  # same size: the client accepts it, only a hash check can tell
    path = hf_hub_download(REPO_ID, "model.keras", cache_dir=tmp_path, **kwargs)
    etag = get_hf_file_metadata(hf_hub_url(REPO_ID, "model.keras", revision=kwargs["revision"], endpoint=hub.url)).etag
    assert etag == hashlib.sha256(V1["model.keras"]).hexdigest() != hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_token_guards_writes_and_private_repos(tmp_path: Path):
    with HubServer(token="secret") as server:
        with pytest.raises(HfHubHTTPError) as error:
            HfApi(endpoint=server.url, token="wrong").create_repo("team/model")
        assert error.value.response.status_code == 401
        owner = HfApi(endpoint=server.url, token="secret")
        owner.create_repo("team/model", private=True)
        owner.upload_file(path_or_fileobj=b"{}", path_in_repo="config.json", repo_id="team/model")
        assert owner.model_info("team/model").private is True
        with pytest.raises(RepositoryNotFoundError):
            HfApi(endpoint=server.url, token=False).model_info("team/model")
        path = snapshot_download("team/model", endpoint=server.url, cache_dir=tmp_path, token="secret")
        assert read_folder(path) == {"config.json": b"{}"}


def post_admin(hub: HubServer, endpoint: str, body: dict) -> dict:
    request = urllib.request.Request(f"{hub.url}/_admin/{endpoint}", data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request) as response:
        return json.load(response)


def test_admin_endpoints_set_and_reset_faults(hub: HubServer, versions: dict[str, str]):
    post_admin(hub, "fail-next-commit", {"mode": "error", "count": 2})
    post_admin(hub, "corrupt", {"path": "model.keras", "mode": "flip"})
    post_admin(hub, "outage", {"status": 502})
    assert (hub.faults.commit_failures, hub.faults.commit_failure_mode) == (2, "error")
    assert hub.faults.corrupt == {"model.keras": "flip"}
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(f"{hub.url}/api/models/{REPO_ID}")
    assert error.value.code == 502
    post_admin(hub, "reset", {})
    with urllib.request.urlopen(f"{hub.url}/api/models/{REPO_ID}") as response:
        assert json.load(response)["sha"] == versions["v2.0.0"]


def test_runs_as_a_module_until_killed():
    command = [sys.executable, "-m", "tests.hub_server", "--port", "0", "--quiet"]
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as process:
        try:
            url = process.stdout.readline().strip()
            with pytest.raises(urllib.error.HTTPError) as error:
                urllib.request.urlopen(f"{url}/api/models/nobody/nothing", timeout=5)
            assert error.value.headers["X-Error-Code"] == "RepoNotFound"
        finally:
            process.terminate()
