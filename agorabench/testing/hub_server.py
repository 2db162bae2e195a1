"""A loopback HTTP server that speaks the part of the Hugging Face Hub API that
`HfApi.create_repo` and `HfApi.upload_folder` use (huggingface_hub 2.4.0), for tests.

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
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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

            def _send(self, status: int, obj: dict) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
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
                    else:
                        status, obj = 404, {"error": f"{path} is not served by FakeHubServer"}
                self._send(status, obj)

            def do_GET(self):
                with hub._lock:
                    hub.requests.append({"method": "GET", "path": self.path,
                                         "authorization": self.headers.get("Authorization")})
                self._send(404, {"error": f"{self.path} is not served by FakeHubServer"})

        return Handler


def _git_oid(data: bytes) -> str:
    """The git blob id of a file's bytes (what the Hub reports as a regular file's oid)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
