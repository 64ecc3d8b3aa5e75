"""Publishing versions to a Hub-compatible server: push, list, refuse, survive a failed upload, load."""

import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from gradio_client import Client
from huggingface_hub import HfApi

from cxr_pneumonia.hub import HubSettings
from cxr_pneumonia.service import PneumoniaService
from tests.conftest import model_copy_with_test_auc
from training import push, versions

REPO = "someone/cxr-model"


@pytest.fixture(scope="module")
def candidates(tiny_model_dir, tmp_path_factory):
    """Three model directories claiming test AUC 0.80, 0.85 and 0.70."""
    root = tmp_path_factory.mktemp("candidates")
    return {auc: model_copy_with_test_auc(tiny_model_dir, root / str(auc), auc) for auc in (0.80, 0.85, 0.70)}


def settings_for(hub, tmp_path) -> HubSettings:
    return HubSettings(repo_id=REPO, revision="main", endpoint=hub.url, cache_dir=str(tmp_path / "cache"))


def run_push(hub, tmp_path, folder, version, *flags, monkeypatch=None):
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    push.main(["--model", str(folder), "--repo-id", REPO, "--version", version, *flags])


def test_push_two_versions_and_list_them(hub, tmp_path, candidates, monkeypatch, capsys):
    run_push(hub, tmp_path, candidates[0.80], "v1.0.0", monkeypatch=monkeypatch)
    run_push(hub, tmp_path, candidates[0.85], "v1.1.0", monkeypatch=monkeypatch)
    out = capsys.readouterr().out
    assert "v1.0.0" in out and "v1.1.0" in out and f"{hub.url}/{REPO}/commit/" in out

    rows = versions.version_rows(settings_for(hub, tmp_path))
    assert [row["tag"] for row in rows] == ["v1.1.0", "v1.0.0"]
    assert [row["auc"] for row in rows] == [0.85, 0.80]
    api = HfApi(endpoint=hub.url)
    commits = api.list_repo_commits(REPO)
    assert commits[0].title.startswith("v1.1.0: test accuracy") and "AUC 0.8500" in commits[0].title
    assert {tag.name: tag.target_commit for tag in api.list_repo_refs(REPO).tags}["v1.1.0"] == commits[0].commit_id
    table = versions.format_table(rows)
    assert "v1.0.0" in table and "0.8000" in table


def test_duplicate_tag_and_regression_are_refused(hub, tmp_path, candidates, monkeypatch):
    run_push(hub, tmp_path, candidates[0.80], "v1.0.0", monkeypatch=monkeypatch)
    with pytest.raises(SystemExit, match="already exists"):
        run_push(hub, tmp_path, candidates[0.85], "v1.0.0", monkeypatch=monkeypatch)
    with pytest.raises(SystemExit, match=r"below v1\.0\.0"):
        run_push(hub, tmp_path, candidates[0.70], "v1.0.1", monkeypatch=monkeypatch)
    assert [tag.name for tag in HfApi(endpoint=hub.url).list_repo_refs(REPO).tags] == ["v1.0.0"]
    run_push(hub, tmp_path, candidates[0.70], "v1.0.1", "--allow-regression", monkeypatch=monkeypatch)
    assert {tag.name for tag in HfApi(endpoint=hub.url).list_repo_refs(REPO).tags} == {"v1.0.0", "v1.0.1"}


def test_failed_upload_leaves_no_tag_and_no_commit(hub, tmp_path, candidates, monkeypatch):
    run_push(hub, tmp_path, candidates[0.80], "v1.0.0", monkeypatch=monkeypatch)
    api = HfApi(endpoint=hub.url)
    before = ([c.commit_id for c in api.list_repo_commits(REPO)], api.list_repo_refs(REPO))
    hub.fail_next_commit("disconnect")
    with pytest.raises(Exception):  # noqa: B017 - a dropped connection surfaces as one of several transport errors
        run_push(hub, tmp_path, candidates[0.85], "v2.0.0", monkeypatch=monkeypatch)
    assert ([c.commit_id for c in api.list_repo_commits(REPO)], api.list_repo_refs(REPO)) == before
    run_push(hub, tmp_path, candidates[0.85], "v2.0.0", monkeypatch=monkeypatch)  # a retry then works


def test_dry_run_uploads_nothing(hub, tmp_path, candidates, monkeypatch, capsys):
    run_push(hub, tmp_path, candidates[0.80], "v1.0.0", "--dry-run", monkeypatch=monkeypatch)
    assert "dry run" in capsys.readouterr().out
    assert not any(request.startswith("POST") for request in hub.requests)


def test_invalid_model_directory_is_refused(hub, tmp_path, candidates, monkeypatch):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"model\.keras"):
        run_push(hub, tmp_path, broken, "v1.0.0", monkeypatch=monkeypatch)
    with pytest.raises(SystemExit, match=r"vX\.Y\.Z"):
        run_push(hub, tmp_path, candidates[0.80], "1.0", monkeypatch=monkeypatch)


def test_app_service_loads_each_version_it_is_asked_for(hub, tmp_path, candidates, monkeypatch):
    run_push(hub, tmp_path, candidates[0.80], "v1.0.0", monkeypatch=monkeypatch)
    run_push(hub, tmp_path, candidates[0.85], "v2.0.0", monkeypatch=monkeypatch)
    refs = {tag.name: tag.target_commit for tag in HfApi(endpoint=hub.url).list_repo_refs(REPO).tags}
    service = PneumoniaService(replace(settings_for(hub, tmp_path), revision="v1.0.0"))
    first = service.default.info()
    assert (first["source"], first["version"], first["commit"]) == ("hub", "v1.0.0", refs["v1.0.0"])
    assert first["metrics"]["auc"] == 0.80
    second = service.model("v2.0.0").info()
    assert (second["source"], second["version"], second["commit"]) == ("hub", "v2.0.0", refs["v2.0.0"])
    assert second["metrics"]["auc"] == 0.85
    assert service.model("v2.0.0") is service.model("v2.0.0")  # cached, loaded once
    assert [v.tag for v in service.versions()] == ["v2.0.0", "v1.0.0"]


def test_token_is_used_but_never_printed(tmp_path, candidates):
    from tests.hub_server import HubServer

    secret = "hf_SECRETtoken1234567890"
    with HubServer(token=secret) as hub:
        env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": secret, "HF_HUB_CACHE": str(tmp_path / "cache"),
               "PATH": "/usr/bin:/bin", "HF_HUB_DISABLE_TELEMETRY": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
        result = subprocess.run(
            [sys.executable, "-m", "training.push", "--model", str(candidates[0.80]), "--repo-id", REPO,
             "--version", "v1.0.0"], cwd=Path(__file__).resolve().parent.parent, env=env,
            capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        assert secret not in result.stdout + result.stderr
        assert [tag.name for tag in HfApi(endpoint=hub.url, token=secret).list_repo_refs(REPO).tags] == ["v1.0.0"]
        env.pop("HF_TOKEN")
        env["HF_HOME"] = str(tmp_path / "no-login")  # no stored login either
        refused = subprocess.run(
            [sys.executable, "-m", "training.push", "--model", str(candidates[0.85]), "--repo-id", REPO,
             "--version", "v2.0.0"], cwd=Path(__file__).resolve().parent.parent, env=env,
            capture_output=True, text=True, timeout=300)
        assert refused.returncode != 0


def test_push_then_the_app_serves_the_version_asked_for(hub, tmp_path, monkeypatch):
    """The maintainer chain: push the bundled model as v9.9.9 and a later v9.9.10, start `python app.py`
    pinned to v9.9.9; its /model_info reports v9.9.9 by default and v9.9.10 when asked."""
    from bench.common import free_port

    bundled = Path(__file__).resolve().parent.parent / "model"
    run_push(hub, tmp_path, bundled, "v9.9.9", monkeypatch=monkeypatch)
    newer = model_copy_with_test_auc(bundled, tmp_path / "newer", 1.0)  # above any bundled model's: no regression
    run_push(hub, tmp_path, newer, "v9.9.10", monkeypatch=monkeypatch)
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "HF_ENDPOINT": hub.url, "HF_HUB_CACHE": str(tmp_path / "app-cache"),
           "MODEL_REPO": REPO, "MODEL_REVISION": "v9.9.9", "GRADIO_SERVER_NAME": "127.0.0.1",
           "GRADIO_SERVER_PORT": str(port), "TF_CPP_MIN_LOG_LEVEL": "2"}
    app = subprocess.Popen([sys.executable, "app.py"], cwd=Path(__file__).resolve().parent.parent, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        info = wait_for_model_info(f"http://127.0.0.1:{port}/", app)
        newer_info = Client(f"http://127.0.0.1:{port}/", verbose=False).predict("v9.9.10", api_name="/model_info")
    finally:
        app.terminate()
        app.wait(timeout=30)
    assert (info["repo_id"], info["version"], info["source"]) == (REPO, "v9.9.9", "hub")
    assert (newer_info["version"], newer_info["source"], newer_info["metrics"]["auc"]) == ("v9.9.10", "hub", 1.0)


def wait_for_model_info(url: str, app: subprocess.Popen, timeout: float = 120) -> dict:
    """/model_info of the app at `url`, once it serves."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline and app.poll() is None:
        try:
            return Client(url, verbose=False).predict(api_name="/model_info")
        except Exception:
            time.sleep(0.5)
    raise AssertionError(f"the app did not serve /model_info (exit code {app.poll()})")
