"""A loopback HTTP server that speaks the part of the Hugging Face Hub API that
`HfApi.create_repo` and `HfApi.upload_folder` use, and the part that downloads use
(huggingface_hub 2.4.0, datasets 5.2), for tests.

    with FakeHubServer() as hub:
        HfApi(endpoint=hub.url, token="t").create_repo("org/data", repo_type="dataset")
        ...
        hub.repos["datasets/org/data"]["files"]["README.md"]   # the bytes that arrived

Endpoints, as the client calls them:
  POST /api/repos/create                         {"name", "organization", "type", "visibility"?}
                                                 -> {"url"}; 409 (with "url") when it exists
  POST /api/validate-yaml                        {"content", "repoType"} -> {"errors", "warnings"}:
                                                 the card's front matter must parse, and a dataset's
                                                 `configs:` must be what `datasets` accepts
  POST /api/{type}s/{org}/{name}/preupload/{rev} {"files": [{"path", "sample", "size"}]}
                                                 -> {"files": [{"path", "uploadMode", "shouldIgnore", "oid"}]}
  POST /api/{type}s/{org}/{name}/commit/{rev}    NDJSON: a header line, then one line per file
                                                 -> {"commitUrl", "commitOid"}

Every file is answered uploadMode "regular", so its bytes come inline (base64) in the commit. The
real Hub answers "lfs" for large and binary files, and the client then sends them to Xet storage
through hf_xet's own protocol; that part is not served here.

Downloads, for `hf_hub_download` and `datasets.load_dataset` (files put there by a push or by
`hub.add(key, files)`; only the latest commit of a repository, as "main" or by its id):
  HEAD|GET /{datasets/|spaces/}{org}/{name}/resolve/{rev}/{path}
                                                 the file, with X-Repo-Commit and ETag (its git oid)
  GET  /api/{type}s/{org}/{name}[/revision/{rev}] {"id", "sha", "siblings": [{"rfilename"}], ...}
  GET  /api/{type}s/{org}/{name}/tree/{rev}[/{path}]?recursive=
                                                 [{"type": "file"|"directory", "path", "size"?, "oid"}]
  POST /api/{type}s/{org}/{name}/paths-info/{rev} form paths=... -> the same entries, for those paths

The client reads the endpoint from HF_ENDPOINT when huggingface_hub is imported; in a process that
already imported it, set huggingface_hub.constants.ENDPOINT and HUGGINGFACE_CO_URL_TEMPLATE (and
datasets.config.HF_ENDPOINT for `load_dataset`).
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# GET /api/{type}s/org/name[/revision/{rev}] (the repository's info) and .../tree/{rev}[/{path}] (its
# files), POST .../paths-info/{rev}: what `datasets.load_dataset` and HfFileSystem ask for.
REPO_API = re.compile(r"^/api/(models|datasets|spaces)/([^/]+/[^/]+)(?:/(revision|tree)/([^/]+)(?:/(.*))?)?$")
PATHS_INFO = re.compile(r"^/api/(models|datasets|spaces)/([^/]+/[^/]+)/paths-info/([^/]+)$")
# GET/HEAD /{datasets|spaces/}org/name/resolve/{revision}/{path}: what hf_hub_download asks for.
RESOLVE_PATH = re.compile(r"^/(?:(datasets|spaces)/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")
REPO_PATH = re.compile(r"^/api/(models|datasets|spaces)/([^/]+/[^/]+)/(preupload|commit)/([^/?]+)")


class FakeHubServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.repos: dict[str, dict] = {}      # "datasets/org/name" -> {"private", "files", "commits"}
        self.requests: list[dict] = []        # {"method", "path", "authorization"} in arrival order
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer((host, port), self._handler())
        self._httpd.daemon_threads = True
        self.url = f"http://{host}:{self._httpd.server_address[1]}"
        self._thread: threading.Thread | None = None

    def __enter__(self):
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-hub", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._httpd.shutdown()
        self._httpd.server_close()

    # -- the API ---------------------------------------------------------------------------------
    def create(self, body: dict) -> tuple[int, dict]:
        kind = body.get("type") or "model"
        name = f"{body['organization']}/{body['name']}" if body.get("organization") else body["name"]
        key = f"{kind}s/{name}"
        url = f"{self.url}/{kind + 's/' if kind != 'model' else ''}{name}"
        if key in self.repos:
            return 409, {"error": "You already created this repo", "url": url}
        self.repos[key] = {"private": body.get("visibility") == "private", "files": {}, "commits": []}
        return 200, {"url": url, "name": name}

    def validate_yaml(self, body: dict) -> tuple[int, dict]:
        from huggingface_hub import DatasetCard

        try:
            card = DatasetCard(body["content"])
            if body.get("repoType") == "dataset":
                from datasets.utils.metadata import MetadataConfigs

                MetadataConfigs.from_dataset_card_data(card.data)
        except Exception as e:  # the Hub answers 400 with the reason
            return 400, {"errors": [{"message": str(e).splitlines()[0]}], "warnings": []}
        return 200, {"errors": [], "warnings": []}

    def preupload(self, key: str, body: dict) -> tuple[int, dict]:
        if key not in self.repos:
            return 404, {"error": f"Repository {key} not found"}
        files = self.repos[key]["files"]
        return 200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                                "oid": _git_oid(files[f["path"]]) if f["path"] in files else None}
                               for f in body["files"]]}

    def commit(self, key: str, raw: bytes) -> tuple[int, dict]:
        if key not in self.repos:
            return 404, {"error": f"Repository {key} not found"}
        lines = [json.loads(line) for line in raw.splitlines() if line.strip()]
        header, ops = lines[0], lines[1:]
        if header.get("key") != "header":
            return 400, {"error": "the first line must be the commit header"}
        repo = self.repos[key]
        for op in ops:
            if op["key"] == "file":
                repo["files"][op["value"]["path"]] = base64.b64decode(op["value"]["content"])
            elif op["key"] == "deletedFile":
                repo["files"].pop(op["value"]["path"], None)
            else:  # lfsFile and the rest need storage this server does not have
                return 400, {"error": f"operation {op['key']!r} is not served here"}
        oid = hashlib.sha1(raw).hexdigest()
        repo["commits"].append({"summary": header["value"].get("summary"), "oid": oid,
                                "paths": [op["value"]["path"] for op in ops]})
        return 200, {"commitUrl": f"{self.url}/{key}/commit/{oid}", "commitOid": oid, "pullRequestUrl": None}

    def add(self, key: str, files: dict[str, bytes], commit: str | None = None) -> str:
        """Put `files` (path -> bytes) into repository `key` ("datasets/org/name") as one commit, for
        clients to download; returns the commit id (`commit`, or one made from the previous head and
        the new contents, so every commit has its own)."""
        with self._lock:
            repo = self.repos.setdefault(key, {"private": False, "files": {}, "commits": []})
            repo["files"].update(files)
            parent = repo["commits"][-1]["oid"] if repo["commits"] else ""
            oid = commit or hashlib.sha1(
                parent.encode() + b"".join(k.encode() + _git_oid(files[k]).encode() for k in sorted(files))).hexdigest()
            repo["commits"].append({"summary": "add", "oid": oid, "paths": sorted(files)})
            return oid

    def _snapshot(self, kind: str, name: str, revision: str) -> tuple[str, dict[str, bytes]] | str:
        """(commit, files) of the repository at `revision` ("main" or its latest commit: only the latest
        state is kept), or the Hub's error code, which the clients turn into their own exceptions."""
        repo = self.repos.get(f"{kind}/{name}")
        if repo is None or not repo["commits"]:
            return "RepoNotFound"
        head = repo["commits"][-1]["oid"]
        if revision not in ("main", head):
            return "RevisionNotFound"
        return head, repo["files"]

    def resolve(self, kind: str, name: str, revision: str, path: str) -> tuple[str, bytes] | str:
        """(commit, bytes) of `path` at `revision`, or the Hub's error code."""
        snap = self._snapshot(kind, name, revision)
        if isinstance(snap, str):
            return snap
        commit, files = snap
        return (commit, files[path]) if path in files else "EntryNotFound"

    def info(self, kind: str, name: str, revision: str = "main") -> tuple[int, dict]:
        snap = self._snapshot(kind, name, revision)
        if isinstance(snap, str):
            return _missing(f"{kind}/{name}@{revision}", snap)
        commit, files = snap
        return 200, {"id": name, "sha": commit, "private": False, "disabled": False, "gated": False,
                     "lastModified": "2026-01-01T00:00:00.000Z", "tags": [], "downloads": 0, "likes": 0,
                     "siblings": [{"rfilename": path} for path in sorted(files)]}

    def _entries(self, files: dict[str, bytes], paths) -> list[dict]:
        """Tree entries (files and the folders above them) for `paths`, in order."""
        folders = {"/".join(f.split("/")[:i]) for f in files for i in range(1, f.count("/") + 1)}
        out = []
        for path in paths:
            if path in files:
                out.append({"type": "file", "path": path, "size": len(files[path]), "oid": _git_oid(files[path])})
            elif path in folders:
                out.append({"type": "directory", "path": path, "oid": hashlib.sha1(path.encode()).hexdigest()})
        return out

    def tree(self, kind: str, name: str, revision: str, folder: str, recursive: bool) -> tuple[int, list | dict]:
        """The entries below `folder`: its children, or with `recursive` every file and folder under it."""
        snap = self._snapshot(kind, name, revision)
        if isinstance(snap, str):
            return _missing(f"{kind}/{name}@{revision}", snap)
        files = snap[1]
        prefix = folder.strip("/") + "/" if folder.strip("/") else ""
        below: set[str] = set()
        for path in files:
            if path.startswith(prefix):
                parts = path[len(prefix):].split("/")
                depth = len(parts) if recursive else 1
                below.update(prefix + "/".join(parts[:i]) for i in range(1, depth + 1))
        if prefix and not below:
            return _missing(f"{kind}/{name}@{revision}/{folder}", "EntryNotFound")
        return 200, self._entries(files, sorted(below))

    def paths_info(self, kind: str, name: str, revision: str, paths: list[str]) -> tuple[int, list | dict]:
        snap = self._snapshot(kind, name, revision)
        if isinstance(snap, str):
            return _missing(f"{kind}/{name}@{revision}", snap)
        return 200, self._entries(snap[1], paths)

    # -- HTTP ------------------------------------------------------------------------------------
    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = b""
                    while True:
                        size = int(self.rfile.readline().strip().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            return out
                        out += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _send(self, status: int, obj: dict | list) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                if isinstance(obj, dict) and "code" in obj:  # as the Hub names its 404s
                    self.send_header("X-Error-Code", obj["code"])
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                raw = self._body()
                path = self.path.split("?")[0]
                with hub._lock:
                    hub.requests.append({"method": "POST", "path": self.path,
                                         "authorization": self.headers.get("Authorization")})
                    m = REPO_PATH.match(path)
                    if path == "/api/repos/create":
                        status, obj = hub.create(json.loads(raw))
                    elif path == "/api/validate-yaml":
                        status, obj = hub.validate_yaml(json.loads(raw))
                    elif m and m.group(3) == "preupload":
                        status, obj = hub.preupload(f"{m.group(1)}/{m.group(2)}", json.loads(raw))
                    elif m:
                        status, obj = hub.commit(f"{m.group(1)}/{m.group(2)}", raw)
                    elif PATHS_INFO.match(path):
                        kind, name, rev = PATHS_INFO.match(path).groups()
                        paths = urllib.parse.parse_qs(raw.decode()).get("paths", [])  # a form, as the client sends it
                        status, obj = hub.paths_info(kind, name, urllib.parse.unquote(rev), paths)
                    else:
                        status, obj = 404, {"error": f"{path} is not served by FakeHubServer"}
                self._send(status, obj)

            def _resolve(self, head: bool) -> None:
                with hub._lock:
                    hub.requests.append({"method": "HEAD" if head else "GET", "path": self.path,
                                         "authorization": self.headers.get("Authorization")})
                    m = RESOLVE_PATH.match(self.path.split("?")[0])
                    if m is None:
                        return self._send(404, {"error": f"{self.path} is not served by FakeHubServer"})
                    kind, name, revision, path = m.groups()
                    # The client quotes the revision and the path (a space, "refs/pr/1").
                    found = hub.resolve(kind or "models", name, urllib.parse.unquote(revision),
                                        urllib.parse.unquote(path))
                if isinstance(found, str):
                    self.send_response(404)
                    self.send_header("X-Error-Code", found)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                commit, data = found
                self.send_response(200)
                self.send_header("X-Repo-Commit", commit)
                self.send_header("ETag", f'"{_git_oid(data)}"')
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if not head:
                    self.wfile.write(data)

            def do_HEAD(self):
                self._resolve(head=True)

            def do_GET(self):
                path, _, query = self.path.partition("?")
                m = REPO_API.match(path)
                if m is None:
                    return self._resolve(head=False)
                with hub._lock:
                    hub.requests.append({"method": "GET", "path": self.path,
                                         "authorization": self.headers.get("Authorization")})
                    kind, name, what, rev, folder = m.groups()
                    rev = urllib.parse.unquote(rev or "main")
                    if what == "tree":
                        recursive = urllib.parse.parse_qs(query).get("recursive") == ["true"]
                        status, obj = hub.tree(kind, name, rev, urllib.parse.unquote(folder or ""), recursive)
                    else:
                        status, obj = hub.info(kind, name, rev)
                self._send(status, obj)

        return Handler


def jsonl_bytes(rows: list[dict]) -> bytes:
    """Rows as a JSON Lines file's bytes, as the Hub's data files and Arena-Hard's answer files are."""
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def dataset_repo(configs: dict[str, dict[str, list[dict]]]) -> dict[str, bytes]:
    """A dataset repository's files in the Hub's layout, for `add`: a card whose `configs:` name each
    config's split files, and those files as JSON Lines (config -> split -> rows)."""
    card = ["---", "configs:"]
    files = {}
    for config, splits in configs.items():
        card += [f"- config_name: {config}", "  data_files:"]
        for split, rows in splits.items():
            files[f"{config}/{split}.jsonl"] = jsonl_bytes(rows)
            card += [f"  - split: {split}", f"    path: {config}/{split}.jsonl"]
    return {"README.md": ("\n".join([*card, "---", ""])).encode(), **files}


def _missing(what: str, code: str) -> tuple[int, dict]:
    """A 404 as the Hub answers it: its code (RepoNotFound, RevisionNotFound, EntryNotFound) goes into
    the X-Error-Code header, from which the clients pick their exception."""
    return 404, {"error": f"{what}: {code}", "code": code}


def _git_oid(data: bytes) -> str:
    """The git blob id of a file's bytes (what the Hub reports as a regular file's oid)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
