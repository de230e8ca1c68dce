"""A stand-in for the Hugging Face Hub on 127.0.0.1: repos served from local folders, every request counted.

What the real clients call, and so what this serves (huggingface_hub 2.4 under `datasets` 3.6 and 5.2;
`HfFileSystem` for `hf://` paths, `HfApi`, `hf_hub_download`, `datasets`' Hub module factory):

  GET  /api/{type}s/{repo}[/revision/{rev}]        repo info (`repo_info`/`dataset_info`; `HfFileSystem`
                                                   asks it once per repo and revision to check both exist)
  GET  /api/{type}s/{repo}/tree/{rev}[/{path}]     listing (`list_repo_tree`; `?recursive=`, `?expand=`),
                                                   paginated with a `Link: <...>; rel="next"` header
  POST /api/{type}s/{repo}/paths-info/{rev}        info of given paths (`get_paths_info`; form or JSON body)
  GET  /api/{type}s/{repo}/refs                    branches and tags (`list_repo_refs`)
  GET  /api/{type}s/{repo}/commits/{rev}           the revision's one commit (`list_repo_commits`)
  GET  /api/whoami-v2                              the token's user (`whoami`)
  HEAD|GET /[{type}s/]{repo}/resolve/{rev}/{path}  file content (`hf_hub_url`): `Range` (206,
                                                   `Content-Range`), `ETag`, `X-Repo-Commit`; files stored
                                                   with LFS answer 302 to a "CDN" (the stand-in's second
                                                   port: another origin) with `X-Linked-Size` /
                                                   `X-Linked-Etag`, as the Hub does.

`{type}` is `dataset`, `model` or `space`; a model repo's resolve URL has no prefix. Paths and revisions
arrive URL-quoted (the client quotes `refs/pr/1` and tree paths with `safe=""`). Errors carry the Hub's
`X-Error-Code` (`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`), so the clients raise their own
typed errors. No Xet: files carry no `xetHash`, so clients use plain HTTP.

A repo is a local folder per revision: `hub.add_repo("owner/name", folder, tags={"v1.0": other_folder})`;
each revision has a commit sha (a hash of the repo id and the folder), usable as a revision too.
`private=True` with `tokens=("hf_x",)`: only those `Authorization: Bearer` tokens see the repo (others get the
Hub's 401 `RepoNotFound`); any unknown token is refused with 401 on every repo, as the Hub does.

Counting: every request is a `HubRequest` in `hub.log` (kind, repo, revision, path, Range, status, body bytes).
`hub.bytes_read()` sums the file bytes sent per path in repo; `hub.reset_stats()` starts a new count.
`hub.latency` (seconds slept before each response) and `hub.bandwidth` (bytes/s per response) slow it down
for benchmarks.

Clients read `HF_ENDPOINT` (and `HF_HUB_OFFLINE`) when imported: `hub.client_env()` gives the environment
for a subprocess (`run_client` runs one), `use_standin_hub(monkeypatch, hub)` points already-imported
clients at it.
"""
import contextlib
import dataclasses
import hashlib
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.parse
from functools import partial
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_CHUNK = 1 << 16
# Stored with LFS (redirected to the "CDN") as on the Hub: the default .gitattributes suffixes, and big files.
LFS_SUFFIXES = (".parquet", ".arrow", ".zip", ".tar", ".gz", ".tgz", ".npy", ".npz", ".jpg", ".jpeg", ".png",
                ".mp4", ".wav", ".mp3", ".flac", ".bin", ".safetensors")
LFS_MIN_BYTES = 10 << 20
REPO_TYPES = ("dataset", "model", "space")
_DATE = "2025-01-01T00:00:00.000Z"


@dataclasses.dataclass
class HubRequest:
    """One request the stand-in answered.

    kind: "info", "tree", "paths-info", "refs", "commits", "whoami", "resolve" (file content, or its 302),
    "cdn" (file content after the 302), "unknown" (anything else: answered 404, so a test sees what a client
    wanted). `path` is the path in the repo (tree, resolve, cdn), `bytes_sent` the body bytes written.
    """

    method: str
    url: str
    kind: str = "unknown"
    repo_id: Optional[str] = None
    revision: Optional[str] = None
    path: Optional[str] = None
    range: Optional[str] = None
    status: int = 0
    bytes_sent: int = 0
    token: Optional[str] = None


@dataclasses.dataclass
class HubRepo:
    """A repo of the stand-in: one local folder per revision (branches and tags by name)."""

    repo_id: str
    repo_type: str
    branches: Dict[str, str]
    tags: Dict[str, str]
    private: bool = False
    tokens: Tuple[str, ...] = ()

    def commit(self, revision: str) -> Optional[str]:
        """The commit sha of a branch, tag or commit sha, or None when the repo has no such revision."""
        folder = self.folder(revision)
        return self.commit_of(folder) if folder else None

    def commit_of(self, folder: str) -> str:
        """The commit sha of a revision's folder (revisions serving one folder share their commit)."""
        return _sha1(f"{self.repo_type}/{self.repo_id}:{os.path.realpath(folder)}")

    def folder(self, revision: str) -> Optional[str]:
        """The folder of a branch, tag or commit sha, or None."""
        refs = {**self.tags, **self.branches}
        if revision in refs:
            return refs[revision]
        if _COMMIT.match(revision):
            return next((folder for folder in refs.values() if self.commit_of(folder) == revision), None)
        return None


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


class StandinHub:
    """The server. Start with `with StandinHub() as hub:` (or `start()`/`stop()`); `hub.endpoint` is its URL."""

    def __init__(self, latency: float = 0.0, bandwidth: Optional[float] = None, page_size: int = 1000,
                 max_requests: int = 20_000):
        self.repos: Dict[Tuple[str, str], HubRepo] = {}
        self.latency = latency
        self.bandwidth = bandwidth
        self.page_size = page_size  # entries per tree page (the Hub: 1000; 50 with expand=True)
        self.max_requests = max_requests  # a runaway client gets 503 instead of looping forever
        self.log: List[HubRequest] = []
        self._lock = threading.Lock()
        self._active = 0
        self._last_active = time.monotonic()
        self._lfs_ids: Dict[Tuple[str, int, int], str] = {}
        self._cdn: Dict[str, Tuple[HubRepo, str, str]] = {}
        self._server: Optional[http.server.ThreadingHTTPServer] = None
        self._cdn_server: Optional[http.server.ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._cdn_thread: Optional[threading.Thread] = None

    # -- set-up -------------------------------------------------------------------------------

    def add_repo(self, repo_id: str, folder: str, *, repo_type: str = "dataset", tags: Optional[Dict[str, str]] = None,
                 branches: Optional[Dict[str, str]] = None, private: bool = False, tokens: Sequence[str] = ()) -> HubRepo:
        """Serve `folder` as `main` of `repo_id` (its content is the repo's root), plus other branches and tags."""
        if repo_type not in REPO_TYPES:
            raise ValueError(f"repo_type={repo_type!r}; choose from {REPO_TYPES}")
        if private and not tokens:
            raise ValueError(f"{repo_id}: a private repo needs the tokens that may read it")
        for name, path in {"main": folder, **(branches or {}), **(tags or {})}.items():
            if not os.path.isdir(path):
                raise ValueError(f"{repo_id}@{name}: {path} is not a folder")
        repo = HubRepo(repo_id, repo_type, {"main": os.path.abspath(folder),
                                            **{k: os.path.abspath(v) for k, v in (branches or {}).items()}},
                       {k: os.path.abspath(v) for k, v in (tags or {}).items()}, private, tuple(tokens))
        self.repos[(repo_type, repo_id)] = repo
        return repo

    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise RuntimeError("the stand-in Hub is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def cdn_endpoint(self) -> str:
        """Where LFS files are redirected: another port, so another origin, as the Hub's CDN is another host."""
        if self._cdn_server is None:
            raise RuntimeError("the stand-in Hub is not started")
        return f"http://127.0.0.1:{self._cdn_server.server_address[1]}"

    def start(self) -> "StandinHub":
        self._server, self._thread = self._serve("standin-hub")
        self._cdn_server, self._cdn_thread = self._serve("standin-hub-cdn")
        return self

    def _serve(self, name: str):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, hub=self))
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name=name)
        thread.start()
        return server, thread

    def stop(self) -> None:
        for server, thread in ((self._server, self._thread), (self._cdn_server, self._cdn_thread)):
            if server is not None:
                server.shutdown()
                server.server_close()
                thread.join(timeout=5)
        self._server = self._cdn_server = None

    def __enter__(self) -> "StandinHub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- counting -----------------------------------------------------------------------------

    def reset_stats(self) -> None:
        """Forget the requests seen so far (waits for those in progress first)."""
        self.wait_idle()
        with self._lock:
            self.log.clear()

    def requests(self, kind: Optional[str] = None, repo_id: Optional[str] = None,
                 path: Optional[str] = None) -> List[HubRequest]:
        """The requests seen, optionally only those of a kind, a repo, a path in the repo."""
        with self._lock:
            return [r for r in self.log if (kind is None or r.kind == kind) and (repo_id is None or r.repo_id == repo_id)
                    and (path is None or r.path == path)]

    def bytes_read(self, repo_id: Optional[str] = None) -> Dict[str, int]:
        """File bytes sent per path in repo (resolve and CDN bodies), paths never read left out."""
        out: Dict[str, int] = {}
        for r in self.requests(repo_id=repo_id):
            if r.kind in ("resolve", "cdn") and r.bytes_sent:
                out[r.path] = out.get(r.path, 0) + r.bytes_sent
        return out

    def wait_idle(self, quiet: float = 0.2, timeout: float = 10.0) -> None:
        """Wait until no request has been in progress for `quiet` seconds (a client may still be reading)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                idle = not self._active and time.monotonic() - self._last_active >= quiet
            if idle:
                return
            time.sleep(0.02)

    # -- clients ------------------------------------------------------------------------------

    def client_env(self, token: Optional[str] = None, hf_home: Optional[str] = None,
                   base: Optional[Dict[str, str]] = None) -> Dict[str, str]:
        """An environment in which huggingface_hub and datasets talk to this stand-in only.

        Online (the offline switches of tests/conftest.py removed), `HF_ENDPOINT` set, no token but `token`
        (`HF_TOKEN`), and with `hf_home` a fresh `HF_HOME` (no saved token, no shared cache).
        """
        env = dict(os.environ if base is None else base)
        for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN",
                     "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH"):
            env.pop(name, None)
        env.update({"HF_ENDPOINT": self.endpoint, "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_ETAG_TIMEOUT": "30",
                    "HF_HUB_DOWNLOAD_TIMEOUT": "30", "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"})
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
            env.pop(name, None)
        if hf_home:
            env["HF_HOME"] = hf_home
        if token:
            env["HF_TOKEN"] = token
        return env

    # -- answering ----------------------------------------------------------------------------

    def _entry(self, repo: HubRepo, folder: str, rel: str, expand: bool) -> dict:
        full = os.path.join(folder, rel)
        if os.path.isdir(full):
            entry = {"type": "directory", "oid": _sha1(f"tree:{full}:{os.stat(full).st_mtime_ns}"), "size": 0,
                     "path": rel}
        else:
            stat = os.stat(full)
            entry = {"type": "file", "oid": _sha1(f"blob:{full}:{stat.st_size}:{stat.st_mtime_ns}"),
                     "size": stat.st_size, "path": rel}
            lfs = self._lfs_id(repo, folder, rel)
            if lfs:
                entry["lfs"] = {"oid": lfs, "size": stat.st_size, "pointerSize": 134}
        if expand:
            entry["lastCommit"] = {"id": repo.commit_of(folder), "title": "stand-in commit", "date": _DATE}
            if entry["type"] == "file":
                entry["securityFileStatus"] = {"status": "safe", "avScan": {"virusFound": False},
                                               "pickleImportScan": None}
        return entry

    def _lfs_id(self, repo: HubRepo, folder: str, rel: str) -> Optional[str]:
        """The sha256 of a file stored with LFS (and its CDN name), None for a plain git file."""
        full = os.path.join(folder, rel)
        stat = os.stat(full)
        if not (rel.lower().endswith(LFS_SUFFIXES) or stat.st_size >= LFS_MIN_BYTES):
            return None
        key = (os.path.realpath(full), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            known = self._lfs_ids.get(key)
        if known is None:
            digest = hashlib.sha256()
            with open(full, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            known = digest.hexdigest()
            with self._lock:
                self._lfs_ids[key] = known
                self._cdn[known] = (repo, folder, rel)
        return known


def _inside(folder: str, rel: str) -> Optional[str]:
    """`folder/rel` when it exists and stays inside `folder` (no `..`, no symlink out), else None."""
    if rel.startswith("/") or "\\" in rel or any(part in ("..", ".") for part in rel.split("/") if part):
        return None
    full = os.path.realpath(os.path.join(folder, rel))
    root = os.path.realpath(folder)
    if full != root and not full.startswith(root + os.sep):
        return None
    return full if os.path.exists(full) else None


class _HubError(Exception):
    def __init__(self, status: int, message: str, code: Optional[str] = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the clients' connection pools expect
    # Headers and body go out in separate writes: with Nagle's algorithm, the client's delayed ACK stalls
    # every small response by ~40 ms.
    disable_nagle_algorithm = True
    timeout = 30

    def __init__(self, *args, hub: StandinHub, **kwargs):
        self.hub = hub
        super().__init__(*args, **kwargs)

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        pass

    def do_GET(self):
        self._serve()

    def do_HEAD(self):
        self._serve()

    def do_POST(self):
        self._serve()

    # -- dispatch -----------------------------------------------------------------------------

    def _serve(self) -> None:
        hub = self.hub
        record = HubRequest(self.command, self.path, range=self.headers.get("Range"))
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) if self.command == "POST" else b""
        with hub._lock:
            hub._active += 1
            hub.log.append(record)
            too_many = len(hub.log) > hub.max_requests
        try:
            if hub.latency:
                time.sleep(hub.latency)
            if too_many:
                raise _HubError(503, "request limit of the stand-in Hub reached")
            record.token = self._token()
            self._route(record, body)
        except _HubError as err:
            self._send_json(record, {"error": err.message}, err.status, {"X-Error-Code": err.code} if err.code else {},
                            error_message=err.message)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client had what it wanted (e.g. a stream closed early)
        except Exception as err:  # a bug of the stand-in: answer it, so the client's error names it
            self._send_json(record, {"error": f"stand-in Hub failure: {err!r}"}, 500,
                            error_message=f"stand-in Hub failure: {err!r}")
        finally:
            with hub._lock:
                hub._active -= 1
                hub._last_active = time.monotonic()

    def _token(self) -> Optional[str]:
        """The `Authorization: Bearer` token, or None (checked by `_check_token` once the request is classified)."""
        auth = self.headers.get("Authorization") or ""
        if not auth:
            return None
        return auth[len("Bearer "):].strip() if auth.startswith("Bearer ") else auth

    def _check_token(self, record: HubRequest) -> None:
        """The Hub refuses a token it does not know on every route, public repos included."""
        known = {t for repo in self.hub.repos.values() for t in repo.tokens}
        if record.token is not None and record.token not in known:
            raise _HubError(401, "Invalid credentials in Authorization header")

    def _route(self, record: HubRequest, body: bytes) -> None:
        split = urllib.parse.urlsplit(self.path)
        parts = split.path.split("/")[1:]  # still quoted: a quoted "/" (%2F) stays inside its part
        query = urllib.parse.parse_qs(split.query)
        if parts[:2] == ["api", "whoami-v2"]:
            record.kind = "whoami"
            self._check_token(record)
            if not record.token:
                raise _HubError(401, "Invalid username or password.")
            return self._send_json(record, {"type": "user", "name": "standin-user", "auth": {"type": "access_token"}})
        if parts and parts[0] == "_cdn" and len(parts) == 2:
            return self._cdn(record, parts[1])
        if len(parts) >= 3 and parts[0] == "api" and parts[1].endswith("s") and parts[1][:-1] in REPO_TYPES:
            return self._api(record, parts[1][:-1], parts[2:], query, body)
        repo_type = "model"
        if parts and parts[0].endswith("s") and parts[0][:-1] in ("dataset", "space"):
            repo_type, parts = parts[0][:-1], parts[1:]
        if len(parts) >= 4 and parts[2] == "resolve":
            record.kind = "resolve"
            repo = self._repo(record, repo_type, "/".join(parts[:2]))
            revision, folder = self._revision(record, repo, urllib.parse.unquote(parts[3]))
            return self._resolve(record, repo, revision, folder, urllib.parse.unquote("/".join(parts[4:])))
        raise _HubError(404, f"the stand-in Hub does not serve {self.command} {split.path}")

    def _api(self, record: HubRequest, repo_type: str, parts: List[str], query, body: bytes) -> None:
        if len(parts) < 2:
            raise _HubError(404, "no repo id")
        rest = parts[2:]
        kinds = {"revision": "info", "tree": "tree", "paths-info": "paths-info", "refs": "refs", "commits": "commits"}
        record.kind = kinds.get(rest[0], "unknown") if rest else "info"
        repo = self._repo(record, repo_type, "/".join(parts[:2]))
        if not rest or rest[0] == "revision":
            revision = urllib.parse.unquote(rest[1]) if len(rest) > 1 else "main"
            revision, folder = self._revision(record, repo, revision)
            return self._send_json(record, self._info(repo, revision, folder, "blobs" in query))
        if rest[0] == "tree" and len(rest) >= 2:
            revision, folder = self._revision(record, repo, urllib.parse.unquote(rest[1]))
            path = urllib.parse.unquote("/".join(rest[2:])).strip("/")
            return self._tree(record, repo, folder, path, query)
        if rest[0] == "paths-info" and len(rest) == 2 and self.command == "POST":
            revision, folder = self._revision(record, repo, urllib.parse.unquote(rest[1]))
            return self._paths_info(record, repo, folder, body)
        if rest == ["refs"]:
            ref = lambda name, kind: {"name": name, "ref": f"refs/{kind}/{name}", "targetCommit": repo.commit(name)}  # noqa: E731
            return self._send_json(record, {"branches": [ref(b, "heads") for b in repo.branches],
                                            "tags": [ref(t, "tags") for t in repo.tags], "converts": []})
        if rest[0] == "commits" and len(rest) == 2:
            revision, _ = self._revision(record, repo, urllib.parse.unquote(rest[1]))
            return self._send_json(record, [{"id": repo.commit(revision), "title": "stand-in commit", "message": "",
                                             "authors": [], "date": _DATE}])
        raise _HubError(404, f"the stand-in Hub does not serve {self.command} /api/{repo_type}s/{'/'.join(parts)}")

    # -- repos and revisions ------------------------------------------------------------------

    def _repo(self, record: HubRequest, repo_type: str, repo_id: str) -> HubRepo:
        repo_id = urllib.parse.unquote(repo_id)
        record.repo_id = repo_id
        self._check_token(record)
        repo = self.hub.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and record.token not in repo.tokens):
            # The Hub answers the same for a missing repo and a private one without access.
            raise _HubError(401 if record.token is None else 404,
                            "Repository not found", "RepoNotFound")
        return repo

    def _revision(self, record: HubRequest, repo: HubRepo, revision: str) -> Tuple[str, str]:
        record.revision = revision
        folder = repo.folder(revision)
        if folder is None:
            raise _HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return revision, folder

    def _info(self, repo: HubRepo, revision: str, folder: str, blobs: bool) -> dict:
        siblings = []
        for rel in _walk(folder):
            sibling = {"rfilename": rel}
            if blobs:
                entry = self.hub._entry(repo, folder, rel, expand=False)
                sibling.update({"size": entry["size"], "blobId": entry["oid"]})
                if "lfs" in entry:
                    sibling["lfs"] = {"sha256": entry["lfs"]["oid"], "size": entry["size"], "pointerSize": 134}
            siblings.append(sibling)
        author = repo.repo_id.split("/")[0]
        return {"_id": _sha1(repo.repo_id)[:24], "id": repo.repo_id, "author": author, "sha": repo.commit(revision),
                "private": repo.private, "gated": False, "disabled": False, "downloads": 0, "likes": 0,
                "tags": [], "createdAt": _DATE, "lastModified": _DATE, "siblings": siblings, "cardData": {}}

    # -- listings -----------------------------------------------------------------------------

    def _tree(self, record: HubRequest, repo: HubRepo, folder: str, path: str, query) -> None:
        record.path = path
        full = _inside(folder, path) if path else folder
        if full is None or not os.path.isdir(full):
            raise _HubError(404, f"{path}: no such folder in {repo.repo_id}", "EntryNotFound")
        recursive = (query.get("recursive") or ["false"])[0].lower() in ("1", "true")
        expand = (query.get("expand") or ["false"])[0].lower() in ("1", "true")
        names = _walk(folder, path, recursive=recursive, with_dirs=True)
        start = int((query.get("cursor") or ["0"])[0])
        size = min(self.hub.page_size, 50) if expand else self.hub.page_size
        if query.get("limit"):
            size = min(size, int(query["limit"][0]))
        page = [self.hub._entry(repo, folder, rel, expand) for rel in names[start:start + size]]
        headers = {}
        if start + size < len(names):
            pairs = [(k, v) for k, vs in query.items() if k != "cursor" for v in vs] + [("cursor", str(start + size))]
            next_url = f"{self.hub.endpoint}{urllib.parse.urlsplit(self.path).path}?{urllib.parse.urlencode(pairs)}"
            headers["Link"] = f'<{next_url}>; rel="next"'
        self._send_json(record, page, headers=headers)

    def _paths_info(self, record: HubRequest, repo: HubRepo, folder: str, body: bytes) -> None:
        if (self.headers.get("Content-Type") or "").startswith("application/json"):
            payload = json.loads(body or b"{}")
            paths, expand = payload.get("paths", []), bool(payload.get("expand"))
        else:
            form = urllib.parse.parse_qs(body.decode())
            paths, expand = form.get("paths", []), (form.get("expand") or ["false"])[0].lower() in ("1", "true")
        entries = []
        for path in paths:
            path = path.strip("/")
            if _inside(folder, path) is not None:
                entries.append(self.hub._entry(repo, folder, path, expand))
        record.path = ",".join(paths)
        self._send_json(record, entries)

    # -- files --------------------------------------------------------------------------------

    def _resolve(self, record: HubRequest, repo: HubRepo, revision: str, folder: str, path: str) -> None:
        record.kind, record.path = "resolve", path
        full = _inside(folder, path)
        if full is None or not os.path.isfile(full):
            raise _HubError(404, f"{path}: entry not found in {repo.repo_id}@{revision}", "EntryNotFound")
        lfs = self.hub._lfs_id(repo, folder, path)
        headers = {"X-Repo-Commit": repo.commit(revision)}
        if lfs:
            # The Hub redirects LFS files to a CDN; the clients take size and etag from these headers.
            headers.update({"Location": f"{self.hub.cdn_endpoint}/_cdn/{lfs}", "X-Linked-Size": str(os.path.getsize(full)),
                            "X-Linked-Etag": f'"{lfs}"', "ETag": f'"{lfs}"'})
            return self._send_bytes(record, b"", 302, headers)
        headers["ETag"] = f'"{self.hub._entry(repo, folder, path, expand=False)["oid"]}"'
        self._send_file(record, full, headers)

    def _cdn(self, record: HubRequest, lfs: str) -> None:
        record.kind = "cdn"
        with self.hub._lock:
            found = self.hub._cdn.get(lfs)
        if found is None:
            raise _HubError(404, "no such object")
        repo, folder, path = found
        record.repo_id, record.path = repo.repo_id, path
        self._send_file(record, os.path.join(folder, path), {"ETag": f'"{lfs}"'})

    def _send_file(self, record: HubRequest, full: str, headers: Dict[str, str]) -> None:
        size = os.path.getsize(full)
        start, end, status = 0, size - 1, 200
        match = _RANGE.match((record.range or "").strip())
        if match and (match.group(1) or match.group(2)):
            if match.group(1):
                start = int(match.group(1))
                end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
            else:  # the last n bytes
                start = max(0, size - int(match.group(2)))
            if start >= size or start > end:
                return self._send_bytes(record, b"", 416, {"Content-Range": f"bytes */{size}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        length = end - start + 1 if size else 0
        self.send_response(status)
        for name, value in {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes",
                            "Content-Length": str(length), **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        record.status = status
        if self.command == "HEAD":
            return
        with open(full, "rb") as f:
            f.seek(start)
            remaining = length
            while remaining > 0:
                chunk = f.read(min(_CHUNK, remaining))
                if not chunk:
                    break
                began = time.monotonic()
                self.wfile.write(chunk)
                remaining -= len(chunk)
                with self.hub._lock:
                    record.bytes_sent += len(chunk)
                if self.hub.bandwidth:
                    time.sleep(max(0.0, len(chunk) / self.hub.bandwidth - (time.monotonic() - began)))

    def _send_json(self, record: HubRequest, payload, status: int = 200, headers: Optional[Dict[str, str]] = None,
                   error_message: Optional[str] = None) -> None:
        headers = dict(headers or {})
        if error_message:
            headers["X-Error-Message"] = error_message
        self._send_bytes(record, json.dumps(payload).encode(), status, {"Content-Type": "application/json", **headers})

    def _send_bytes(self, record: HubRequest, data: bytes, status: int, headers: Dict[str, str]) -> None:
        record.status = status
        self.send_response(status)
        for name, value in {"Content-Length": str(len(data)), **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD" and data:
            self.wfile.write(data)
            record.bytes_sent = len(data)


def _walk(folder: str, path: str = "", recursive: bool = True, with_dirs: bool = False) -> List[str]:
    """Paths (relative to `folder`, "/"-separated, sorted: folders first at each level as the Hub lists them)
    below `folder/path`: all levels with `recursive`, else the direct children."""
    out: List[str] = []
    base = os.path.join(folder, path) if path else folder
    entries = sorted(os.scandir(base), key=lambda e: (not e.is_dir(), e.name))
    for entry in entries:
        rel = f"{path}/{entry.name}" if path else entry.name
        if entry.is_dir(follow_symlinks=False):
            if with_dirs:
                out.append(rel)
            if recursive:
                out.extend(_walk(folder, rel, recursive=True, with_dirs=with_dirs))
        elif entry.is_file():
            if _inside(folder, rel) is not None:
                out.append(rel)
    return out


# ---------------------------------------------------------------------------------------------- clients


def run_client(code: str, env: Dict[str, str], timeout: float = 300) -> dict:
    """Run Python `code` in a fresh interpreter with `env`; the code prints one JSON object as its last line.

    Clients read `HF_ENDPOINT` and the offline switches when imported: a fresh interpreter is the honest way
    to use them as a user would. Raises with the child's output when it fails.
    """
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"client exited with {done.returncode}\n--- stdout\n{done.stdout[-4000:]}\n"
                             f"--- stderr\n{done.stderr[-8000:]}")
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if not lines:
        raise AssertionError(f"client printed nothing\n--- stderr\n{done.stderr[-8000:]}")
    return json.loads(lines[-1])


@contextlib.contextmanager
def use_standin_hub(monkeypatch, hub: StandinHub, token: Optional[str] = None) -> Iterator[None]:
    """Point the already-imported huggingface_hub, datasets and fsspec `hf://` at `hub`, online, in this process.

    Their module constants were read at import time, so they are patched along with the environment.
    `HfFileSystem` instances (cached per endpoint and token) are dropped before and after.
    """
    import datasets.config
    import huggingface_hub.constants as hub_constants
    from huggingface_hub import HfFileSystem

    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    if token:
        monkeypatch.setenv("HF_TOKEN", token)
    monkeypatch.setattr(hub_constants, "ENDPOINT", hub.endpoint)
    monkeypatch.setattr(hub_constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub_constants, "HF_HUB_DISABLE_IMPLICIT_TOKEN", False, raising=False)
    monkeypatch.setattr(datasets.config, "HF_ENDPOINT", hub.endpoint)
    monkeypatch.setattr(datasets.config, "HUB_DATASETS_URL",
                        hub.endpoint + "/datasets/{repo_id}/resolve/{revision}/{path}")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", False, raising=False)
    HfFileSystem.clear_instance_cache()
    try:
        yield
    finally:
        HfFileSystem.clear_instance_cache()
