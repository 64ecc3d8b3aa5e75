"""An in-memory Hugging Face Hub look-alike for tests and demos: model repos, plain HTTP, no LFS/Xet transfers.

The real `huggingface_hub` client talks to it through `HfApi(endpoint=server.url)` or `HF_ENDPOINT`.
Demo: `python -m tests.hub_server --port 8999`, then `HF_ENDPOINT=http://127.0.0.1:8999 python -m training.push ...`.

Faults (also settable on `HubServer.faults`), by POSTing JSON to:
  /_admin/fail-next-commit  {"mode": "disconnect" | "error", "count": 1}
  /_admin/outage            {"status": 503}   (null: back to normal)
  /_admin/delay             {"seconds": 2.5}
  /_admin/corrupt           {"path": "model.keras", "mode": "truncate" | "flip"}
  /_admin/reset             {}
GET /_admin/faults shows the current ones.
"""

from __future__ import annotations

import argparse
import base64
import functools
import hashlib
import itertools
import json
import re
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

LFS_MIN_SIZE = 10 * 1024 * 1024  # like the Hub: binary files and files this large are reported as LFS files
LFS_POINTER_VERSION = "version https://git-lfs.github.com/spec/v1"
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"  # huggingface_hub keys its 401 handling on it
COMMIT_FAILURE_MODES = ("disconnect", "error")
CORRUPTION_MODES = ("truncate", "flip")


class HubError(Exception):
    """An error answer: HTTP status, message, and the Hub's X-Error-Code (RepoNotFound, RevisionNotFound...)."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}


class _Disconnect(Exception):
    """Raised by a handler to drop the connection without answering."""


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def git_blob_sha1(content: bytes) -> str:
    """The git object id of a blob with this content."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass(frozen=True)
class Blob:
    """A file's content with the ids the Hub reports for it."""

    content: bytes
    git_oid: str
    sha256: str
    lfs: bool

    @classmethod
    def of(cls, content: bytes) -> Blob:
        """Hash the content; binary or large files are presented as LFS files, as on the Hub."""
        is_lfs = b"\0" in content[:1024] or len(content) >= LFS_MIN_SIZE
        return cls(content, git_blob_sha1(content), hashlib.sha256(content).hexdigest(), is_lfs)

    @property
    def etag(self) -> str:
        """What /resolve reports as ETag: the sha256 for LFS files, the git blob id otherwise."""
        return self.sha256 if self.lfs else self.git_oid

    def _pointer(self) -> bytes:
        return f"{LFS_POINTER_VERSION}\noid sha256:{self.sha256}\nsize {len(self.content)}\n".encode()

    def tree_entry(self, path: str) -> dict[str, Any]:
        """The /tree listing entry (the git oid of an LFS file is its pointer's)."""
        if not self.lfs:
            return {"type": "file", "path": path, "size": len(self.content), "oid": self.git_oid}
        pointer = self._pointer()
        lfs = {"oid": self.sha256, "size": len(self.content), "pointerSize": len(pointer)}
        return {"type": "file", "path": path, "size": len(self.content), "oid": git_blob_sha1(pointer), "lfs": lfs}

    def sibling(self, path: str) -> dict[str, Any]:
        """The model-info `siblings` entry."""
        entry = self.tree_entry(path)
        lfs = entry.get("lfs")
        sibling = {"rfilename": path, "size": entry["size"], "blobId": entry["oid"]}
        if lfs:
            sibling["lfs"] = {"sha256": lfs["oid"], "size": lfs["size"], "pointerSize": lfs["pointerSize"]}
        return sibling


@dataclass(frozen=True)
class Commit:
    """An immutable commit: the whole file tree plus metadata."""

    sha: str
    parent: str | None
    files: Mapping[str, Blob]
    title: str
    message: str
    author: str
    date: str

    def as_json(self) -> dict[str, Any]:
        """The /commits listing entry."""
        authors = [{"user": self.author}]
        return {"id": self.sha, "title": self.title, "message": self.message, "authors": authors, "date": self.date}


@dataclass
class Repo:
    """A model repo: commits, branches and tags (name -> commit sha)."""

    repo_id: str
    private: bool
    created_at: str
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def lookup(self, revision: str) -> str | None:
        """The commit sha a branch, tag, refs/heads/x, refs/tags/x or full sha points to."""
        if revision.startswith("refs/heads/"):
            return self.branches.get(revision.removeprefix("refs/heads/"))
        if revision.startswith("refs/tags/"):
            return self.tags.get(revision.removeprefix("refs/tags/"))
        sha = self.branches.get(revision) or self.tags.get(revision)
        return sha or (revision if revision in self.commits else None)

    def head(self, branch: str) -> Commit:
        """The head commit of a branch (a tag or a sha is not a branch)."""
        sha = self.branches.get(branch.removeprefix("refs/heads/"))
        if sha is None:
            raise HubError(404, f"Branch not found: {branch}", "RevisionNotFound")
        return self.commits[sha]

    def resolve(self, revision: str) -> Commit:
        """The commit of a revision, or a RevisionNotFound error."""
        sha = self.lookup(revision)
        if sha is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return self.commits[sha]


def _apply(files: dict[str, Blob], operations: list[tuple[str, str, Blob | None]]) -> None:
    """Apply commit operations ("file", "deletedFile", "deletedFolder") to a file tree, in order."""
    for kind, path, blob in operations:
        if blob is not None:
            files[path] = blob
        elif kind == "deletedFile":
            if files.pop(path, None) is None:
                raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
        else:  # deletedFolder
            prefix = path.rstrip("/") + "/"
            for name in [name for name in files if name.startswith(prefix)]:
                del files[name]


class HubStore:
    """All repos in memory; every public method is atomic under one lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._repos: dict[str, Repo] = {}
        self._counter = itertools.count()

    def _new_sha(self, repo_id: str) -> str:
        return hashlib.sha1(f"{repo_id}:{next(self._counter)}:{time.time_ns()}".encode()).hexdigest()

    def _repo(self, repo_id: str) -> Repo:
        repo = self._repos.get(repo_id)
        if repo is None:
            raise HubError(404, f"Repository not found: {repo_id}", "RepoNotFound")
        return repo

    def create_repo(self, repo_id: str, private: bool) -> bool:
        """Create a repo whose main branch holds an empty initial commit; False if it already exists."""
        with self._lock:
            if repo_id in self._repos:
                return False
            date = _now()
            initial = Commit(self._new_sha(repo_id), None, {}, "initial commit", "", "system", date)
            repo = Repo(repo_id, private, date, commits={initial.sha: initial}, branches={"main": initial.sha})
            self._repos[repo_id] = repo
            return True

    def repo_and_commit(self, repo_id: str, revision: str) -> tuple[Repo, Commit]:
        """The repo and the commit a revision resolves to."""
        with self._lock:
            repo = self._repo(repo_id)
            return repo, repo.resolve(revision)

    def is_private(self, repo_id: str) -> bool:
        """Whether the repo exists and is private."""
        with self._lock:
            repo = self._repos.get(repo_id)
            return repo is not None and repo.private

    def refs(self, repo_id: str) -> tuple[dict[str, str], dict[str, str]]:
        """Copies of the repo's branches and tags."""
        with self._lock:
            repo = self._repo(repo_id)
            return dict(repo.branches), dict(repo.tags)

    def history(self, repo_id: str, revision: str) -> list[Commit]:
        """Commits reachable from a revision, newest first."""
        with self._lock:
            repo = self._repo(repo_id)
            commits = [repo.resolve(revision)]
            while commits[-1].parent is not None:
                commits.append(repo.commits[commits[-1].parent])
            return commits

    def branch_head(self, repo_id: str, branch: str) -> Commit:
        """The head commit of a branch."""
        with self._lock:
            return self._repo(repo_id).head(branch)

    def commit(
        self, repo_id: str, branch: str, header: dict[str, Any], operations: list[tuple[str, str, Blob | None]]
    ) -> Commit:
        """Create a commit on a branch from its parent's tree and move the branch, all or nothing."""
        with self._lock:
            repo = self._repo(repo_id)
            head = repo.head(branch)
            if header.get("parentCommit") not in (None, head.sha):
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            files = dict(head.files)
            _apply(files, operations)
            sha, author = self._new_sha(repo_id), repo_id.split("/")[0]
            commit = Commit(sha, head.sha, files, header["summary"], header.get("description", ""), author, _now())
            repo.commits[sha] = commit
            repo.branches[branch.removeprefix("refs/heads/")] = sha
            return commit

    def create_tag(self, repo_id: str, revision: str, tag: str) -> None:
        """Tag the revision's commit; 409 if the tag exists."""
        with self._lock:
            repo = self._repo(repo_id)
            commit = repo.resolve(revision)
            if tag in repo.tags:
                raise HubError(409, f"Reference already exists: refs/tags/{tag}")
            repo.tags[tag] = commit.sha

    def delete_tag(self, repo_id: str, tag: str) -> None:
        """Remove a tag; 404 if it does not exist."""
        with self._lock:
            if self._repo(repo_id).tags.pop(tag, None) is None:
                raise HubError(404, f"Tag not found: {tag}", "RevisionNotFound")


@dataclass
class Faults:
    """Injected failures, read by every request; set the attributes directly or through POST /_admin/... ."""

    outage_status: int | None = None  # answer every (non-admin) request with this HTTP status
    delay: float = 0.0  # seconds to wait before handling each (non-admin) request
    commit_failures: int = 0  # how many next commit requests break midway (nothing is stored)
    commit_failure_mode: str = "disconnect"  # "disconnect": drop the connection; "error": answer 500
    corrupt: dict[str, str] = field(default_factory=dict)  # file path -> "truncate" | "flip" (GET bodies only)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def fail_commits(self, count: int, mode: str) -> None:
        """Make the next `count` commit requests fail in this mode."""
        with self._lock:
            self.commit_failures, self.commit_failure_mode = count, mode

    def take_commit_failure(self) -> str | None:
        """The failure mode if this commit request must fail (and count it), else None."""
        with self._lock:
            if self.commit_failures <= 0:
                return None
            self.commit_failures -= 1
            return self.commit_failure_mode

    def as_json(self) -> dict[str, Any]:
        """The current faults, as the admin endpoints report them."""
        names = ("outage_status", "delay", "commit_failures", "commit_failure_mode", "corrupt")
        return {name: getattr(self, name) for name in names}

    def served_bytes(self, path: str, content: bytes) -> bytes:
        """The file's bytes as served by GET: corrupted if requested, ETag and HEAD stay truthful."""
        mode = self.corrupt.get(path)
        if mode == "truncate":
            return content[: len(content) // 2]
        if mode == "flip":
            return bytes(byte ^ 0xFF for byte in content[:16]) + content[16:]
        return content


@dataclass
class Reply:
    """An HTTP answer."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def _json_reply(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, json.dumps(data).encode(), {"Content-Type": "application/json", **(headers or {})})


def _error_reply(error: HubError) -> Reply:
    headers = {"X-Error-Message": error.message.encode("ascii", "replace").decode(), **error.headers}
    if error.code:
        headers["X-Error-Code"] = error.code
    return _json_reply({"error": error.message}, error.status, headers)


def _tree_entries(files: Mapping[str, Blob], prefix: str, recursive: bool) -> list[dict[str, Any]]:
    """Files and folders under a prefix: direct children only unless recursive."""
    entries: dict[str, dict[str, Any]] = {}
    for path, blob in sorted(files.items()):
        if not path.startswith(prefix):
            continue
        parts = path[len(prefix) :].split("/")
        folders = [prefix + "/".join(parts[:depth]) for depth in range(1, len(parts))]
        for folder in folders if recursive else folders[:1]:
            entries.setdefault(folder, _folder_entry(files, folder))
        if recursive or len(parts) == 1:
            entries[path] = blob.tree_entry(path)
    return [entries[path] for path in sorted(entries)]


def _folder_entry(files: Mapping[str, Blob], folder: str) -> dict[str, Any]:
    inside = sorted(path for path in files if path.startswith(f"{folder}/"))
    listing = "\n".join(f"{path} {files[path].git_oid}" for path in inside)
    return {"type": "directory", "path": folder, "size": 0, "oid": hashlib.sha1(listing.encode()).hexdigest()}


REPO = r"([^/]+/[^/]+)"
SEGMENT = r"([^/]+)"
ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    (method, re.compile(pattern), handler)
    for method, pattern, handler in [
        ("POST", r"/api/repos/create", "create_repo"),
        ("POST", r"/api/validate-yaml", "validate_yaml"),
        ("GET", rf"/api/models/{REPO}", "model_info"),
        ("GET", rf"/api/models/{REPO}/revision/{SEGMENT}", "model_info"),
        ("GET", rf"/api/models/{REPO}/refs", "refs"),
        ("GET", rf"/api/models/{REPO}/commits/{SEGMENT}", "commits"),
        ("GET", rf"/api/models/{REPO}/tree/{SEGMENT}(?:/(.+))?", "tree"),
        ("POST", rf"/api/models/{REPO}/preupload/{SEGMENT}", "preupload"),
        ("POST", rf"/api/models/{REPO}/commit/{SEGMENT}", "commit"),
        ("POST", rf"/api/models/{REPO}/tag/{SEGMENT}", "create_tag"),
        ("DELETE", rf"/api/models/{REPO}/tag/{SEGMENT}", "delete_tag"),
        ("GET", rf"/{REPO}/resolve/{SEGMENT}/(.+)", "resolve"),
        ("HEAD", rf"/{REPO}/resolve/{SEGMENT}/(.+)", "resolve"),
    ]
]


class _HTTPServer(ThreadingHTTPServer):
    """The socket server (one daemon thread per request), carrying the HubServer its handlers serve."""

    def __init__(self, address: tuple[str, int], hub: HubServer) -> None:
        super().__init__(address, _Handler)
        self.hub = hub

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore clients that went away (timeouts, dropped connections); report anything else."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """Routes one request to the hub API, applying faults and authentication."""

    server: _HTTPServer
    _body_cache: bytes | None = None

    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_POST = do_DELETE = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.hub.verbose:
            super().log_message(format, *args)

    # -- plumbing ---------------------------------------------------------------------------------

    def _handle(self) -> None:
        hub = self.server.hub
        url = urlsplit(self.path)
        hub.requests.append(f"{self.command} {url.path}")
        try:
            reply = self._admin(url.path) if url.path.startswith("/_admin/") else self._serve(url.path, url.query)
        except HubError as error:
            reply = _error_reply(error)
        except _Disconnect:
            self.close_connection = True
            return
        except Exception as error:  # a malformed request must not kill the handler silently
            reply = _error_reply(HubError(500, f"{type(error).__name__}: {error}"))
        self._send(reply)

    def _serve(self, path: str, query: str) -> Reply:
        faults = self.server.hub.faults
        if faults.delay:
            time.sleep(faults.delay)
        if faults.outage_status:
            raise HubError(faults.outage_status, "Service unavailable (simulated outage)")
        for method, pattern, handler in ROUTES:
            match = pattern.fullmatch(path)
            if match and method == self.command:
                args = [unquote(group) for group in match.groups() if group is not None]
                self._check_token(args[0] if args else None)
                return getattr(self, f"_api_{handler}")(parse_qs(query), *args)
        raise HubError(404, f"No route for {self.command} {path}")

    def _check_token(self, repo_id: str | None) -> None:
        """With a server token: writes need it (401), reads of a private repo too (404, as the Hub hides them)."""
        token = self.server.hub.token
        if not token or self.headers.get("Authorization") == f"Bearer {token}":
            return
        if self.command in ("POST", "DELETE"):
            raise HubError(401, INVALID_CREDENTIALS)
        if repo_id and self.server.hub.store.is_private(repo_id):
            raise HubError(404, f"Repository not found: {repo_id}", "RepoNotFound")

    def _body(self) -> bytes:
        if self._body_cache is None:
            self._body_cache = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        return self._body_cache

    def _json_body(self) -> dict[str, Any]:
        try:
            data = json.loads(self._body() or b"{}")
        except json.JSONDecodeError as error:
            raise HubError(400, f"Invalid JSON body: {error}") from error
        if not isinstance(data, dict):
            raise HubError(400, "Expected a JSON object")
        return data

    def _send(self, reply: Reply) -> None:
        self._body()  # drain an unread request body, else closing the socket resets the connection
        self.send_response(reply.status)
        for name, value in {**reply.headers, "Content-Length": str(len(reply.body))}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)

    def _base(self) -> str:
        host = self.headers.get("Host")
        return f"http://{host}" if host else self.server.hub.url

    # -- admin --------------------------------------------------------------------------------------

    def _admin(self, path: str) -> Reply:
        try:
            self._set_faults(path, self._json_body())
        except (KeyError, TypeError, ValueError) as error:
            raise HubError(400, f"Invalid admin request: {error!r}") from error
        return _json_reply(self.server.hub.faults.as_json())

    def _set_faults(self, path: str, body: dict[str, Any]) -> None:
        hub = self.server.hub
        if path == "/_admin/fail-next-commit":
            hub.fail_next_commit(body.get("mode", "disconnect"), int(body.get("count", 1)))
        elif path == "/_admin/outage":
            hub.faults.outage_status = body.get("status", 503)
        elif path == "/_admin/delay":
            hub.faults.delay = float(body.get("seconds", 0))
        elif path == "/_admin/corrupt":
            hub.corrupt(body["path"], body.get("mode", "truncate"))
        elif path == "/_admin/reset":
            hub.reset_faults()
        elif path != "/_admin/faults":
            raise HubError(404, f"Unknown admin endpoint: {path}")

    # -- API ----------------------------------------------------------------------------------------

    def _api_create_repo(self, query: dict[str, list[str]]) -> Reply:
        body = self._json_body()
        if body.get("type", "model") != "model":
            raise HubError(400, "This test server only hosts model repos")
        name = str(body.get("name", ""))
        repo_id = name if "/" in name else f"{body.get('organization') or self.server.hub.username}/{name}"
        private = bool(body.get("private")) or body.get("visibility") == "private"
        url = f"{self._base()}/{repo_id}"
        if not self.server.hub.store.create_repo(repo_id, private):
            return _json_reply({"error": "You already created this model repo", "url": url}, 409)
        return _json_reply({"url": url, "name": repo_id, "id": repo_id})

    def _api_validate_yaml(self, query: dict[str, list[str]]) -> Reply:
        return _json_reply({"errors": [], "warnings": []})

    def _api_model_info(self, query: dict[str, list[str]], repo_id: str, revision: str = "main") -> Reply:
        repo, commit = self.server.hub.store.repo_and_commit(repo_id, revision)
        info = {
            "id": repo_id,
            "modelId": repo_id,
            "author": repo_id.split("/")[0],
            "sha": commit.sha,
            "private": repo.private,
            "createdAt": repo.created_at,
            "lastModified": commit.date,
            "tags": [],
            "siblings": [blob.sibling(path) for path, blob in sorted(commit.files.items())],
        }
        return _json_reply(info)

    def _api_refs(self, query: dict[str, list[str]], repo_id: str) -> Reply:
        branches, tags = self.server.hub.store.refs(repo_id)

        def refs(names: dict[str, str], kind: str) -> list[dict[str, str]]:
            return [{"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": sha} for n, sha in sorted(names.items())]

        data = {"branches": refs(branches, "heads"), "tags": refs(tags, "tags"), "converts": [], "pullRequests": []}
        return _json_reply(data)

    def _api_commits(self, query: dict[str, list[str]], repo_id: str, revision: str) -> Reply:
        return _json_reply([commit.as_json() for commit in self.server.hub.store.history(repo_id, revision)])

    def _api_tree(self, query: dict[str, list[str]], repo_id: str, revision: str, path: str = "") -> Reply:
        _, commit = self.server.hub.store.repo_and_commit(repo_id, revision)
        recursive = query.get("recursive", ["false"])[0].lower() in ("true", "1")
        prefix = f"{path.strip('/')}/" if path.strip("/") else ""
        entries = _tree_entries(commit.files, prefix, recursive)
        if prefix and not entries:
            raise HubError(404, f"Folder not found: {path}", "EntryNotFound")
        return _json_reply(entries)

    def _api_preupload(self, query: dict[str, list[str]], repo_id: str, revision: str) -> Reply:
        head = self.server.hub.store.branch_head(repo_id, revision)
        files = []
        for item in self._json_body().get("files", []):
            existing = head.files.get(item["path"])
            oid = existing.git_oid if existing else None  # the client skips files whose git blob id matches
            files.append({"path": item["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": oid})
        return _json_reply({"files": files, "commitOid": head.sha})

    def _api_commit(self, query: dict[str, list[str]], repo_id: str, revision: str) -> Reply:
        failure = self.server.hub.faults.take_commit_failure()
        if failure:
            self._fail_midway(failure)
        if query.get("create_pr"):
            raise HubError(400, "Pull requests are not supported by this test server")
        header, operations = _parse_commit(self._body())
        commit = self.server.hub.store.commit(repo_id, revision, header, operations)
        url = f"{self._base()}/{repo_id}/commit/{commit.sha}"
        return _json_reply({"success": True, "commitOid": commit.sha, "commitUrl": url, "pullRequestUrl": None})

    def _fail_midway(self, mode: str) -> None:
        """Read half the body, then drop the connection ("disconnect") or answer 500 ("error")."""
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length // 2)
        if mode == "disconnect":
            raise _Disconnect()
        self._body_cache = self.rfile.read(length - length // 2)
        raise HubError(500, "Internal error while committing (injected failure)")

    def _api_create_tag(self, query: dict[str, list[str]], repo_id: str, revision: str) -> Reply:
        body = self._json_body()
        if not body.get("tag"):
            raise HubError(400, "Missing tag name")
        self.server.hub.store.create_tag(repo_id, revision, str(body["tag"]))
        return _json_reply({})

    def _api_delete_tag(self, query: dict[str, list[str]], repo_id: str, tag: str) -> Reply:
        self.server.hub.store.delete_tag(repo_id, tag)
        return _json_reply({})

    def _api_resolve(self, query: dict[str, list[str]], repo_id: str, revision: str, path: str) -> Reply:
        _, commit = self.server.hub.store.repo_and_commit(repo_id, revision)
        blob = commit.files.get(path)
        if blob is None:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": commit.sha})
        headers = {"Content-Type": "application/octet-stream", "X-Repo-Commit": commit.sha, "ETag": f'"{blob.etag}"'}
        if blob.lfs:
            headers |= {"X-Linked-Etag": f'"{blob.etag}"', "X-Linked-Size": str(len(blob.content))}
        body = blob.content if self.command == "HEAD" else self.server.hub.faults.served_bytes(path, blob.content)
        return Reply(200, body, headers)


def _parse_commit(body: bytes) -> tuple[dict[str, Any], list[tuple[str, str, Blob | None]]]:
    """Split the NDJSON commit payload into its header and its file operations."""
    try:
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
    except json.JSONDecodeError as error:
        raise HubError(400, f"Invalid NDJSON commit payload: {error}") from error
    if not lines or lines[0].get("key") != "header" or not lines[0]["value"].get("summary"):
        raise HubError(400, "The commit payload must start with a header holding a summary")
    return lines[0]["value"], [_parse_operation(line["key"], line["value"]) for line in lines[1:]]


def _parse_operation(key: str, value: dict[str, Any]) -> tuple[str, str, Blob | None]:
    if key == "file":
        if value.get("encoding", "base64") != "base64":
            raise HubError(400, f"Unsupported encoding: {value.get('encoding')}")
        return key, value["path"], Blob.of(base64.b64decode(value["content"]))
    if key in ("deletedFile", "deletedFolder"):
        return key, value["path"], None
    raise HubError(400, f"Unsupported commit operation {key!r}: this test server takes inline (regular) files only")


class HubServer:
    """A Hub-compatible HTTP server on a daemon thread; `with HubServer() as hub:` starts and stops it."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token: str | None = None,
        username: str = "user",
        verbose: bool = False,
    ) -> None:
        self.host, self.port = host, port
        self.token = token  # when set, POST/DELETE calls need "Authorization: Bearer <token>"
        self.username = username  # namespace of repos created without one
        self.verbose = verbose  # log each request to stderr
        self.store = HubStore()
        self.faults = Faults()
        self.requests: list[str] = []  # "METHOD /path" of every request received, in order
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL to use as endpoint, e.g. http://127.0.0.1:8999."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> HubServer:
        """Bind (a free port if port is 0) and serve in a daemon thread."""
        self._httpd = _HTTPServer((self.host, self.port), self)
        self.port = self._httpd.server_address[1]
        serve = functools.partial(self._httpd.serve_forever, poll_interval=0.1)
        self._thread = threading.Thread(target=serve, name="hub-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._httpd is not None and self._thread is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join()
            self._httpd = self._thread = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def fail_next_commit(self, mode: str = "disconnect", count: int = 1) -> None:
        """Break the next `count` commit requests midway: "disconnect" drops the connection, "error" answers 500."""
        if mode not in COMMIT_FAILURE_MODES:
            raise ValueError(f"mode must be one of {COMMIT_FAILURE_MODES}")
        self.faults.fail_commits(count, mode)

    def corrupt(self, path: str, mode: str = "truncate") -> None:
        """Serve corrupted bytes for this file path (any repo, any revision) on GET; HEAD and ETag stay truthful."""
        if mode not in CORRUPTION_MODES:
            raise ValueError(f"mode must be one of {CORRUPTION_MODES}")
        self.faults.corrupt[path] = mode

    def reset_faults(self) -> None:
        """Clear every injected fault."""
        self.faults = Faults()


def hub_server_fixture() -> Iterator[HubServer]:
    """Yield a started server, stopped afterwards; in a conftest: `hub = pytest.fixture(hub_server_fixture)`."""
    with HubServer() as server:
        yield server


def main(argv: list[str] | None = None) -> None:
    """Serve until interrupted, printing the URL to use as HF_ENDPOINT."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8999, help="0 picks a free port")
    parser.add_argument("--token", help="require this bearer token for writes and private reads")
    parser.add_argument("--quiet", action="store_true", help="do not log requests")
    args = parser.parse_args(argv)
    server = HubServer(args.host, args.port, token=args.token, verbose=not args.quiet).start()
    print(server.url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
