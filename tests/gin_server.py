"""A loopback server that speaks GIN's URL layout over real git + git-annex repositories.

Routes (as gin.g-node.org serves them, see ``../shared/reference/gin-and-containers.md``):

- ``GET /<owner>/<repo>/raw/<ref>/<path>``: the file at a branch, tag or full 40-hex commit (short
  ids are refused); git-annex pointers are resolved to their content with ``git annex
  contentlocation``; ``Range: bytes=N-`` is honoured (206);
- ``GET /api/v1/repos/search?q=...&limit=...``: ``{"ok": true, "data": [...]}`` without a token
  (``q=.`` lists everything, at most 50);
- ``GET /api/v1/repos/<owner>/<repo>``: repository information, no token;
- ``GET /api/v1/repos/<owner>/<repo>/contents/...``: 401 without ``Authorization: token <token>``.

Faults for tests: ``truncate_next`` (bytes after which the next file download drops the
connection), ``corrupt`` (flip the first byte of every file served) and ``down`` (refuse with 503).
Every request is appended to ``requests`` as ``(path, headers)``.

``publish`` puts test models (random weights, annexed) and a catalog pinned to them on it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np

CATALOG_REPO = "dlsort/models"

GIT_ENV = {
    "GIT_AUTHOR_NAME": "dlsort tests", "GIT_AUTHOR_EMAIL": "tests@dlsort.invalid",
    "GIT_COMMITTER_NAME": "dlsort tests", "GIT_COMMITTER_EMAIL": "tests@dlsort.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git_env() -> dict:
    """Environment for git and git-annex: fixed identity, and the interpreter's bin folder on PATH
    (pip installs the git-annex binary there)."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {**os.environ, **GIT_ENV, "PATH": path}


def git(repo: Path, *args: str) -> str:
    """Run ``git <args>`` in ``repo`` and return its stdout (raises on failure, showing stderr)."""
    done = subprocess.run(["git", *args], cwd=repo, env=git_env(), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {repo}: {done.stderr.strip()}")
    return done.stdout.strip()


class FakeGin:
    """GIN-like server over repositories under ``root/<owner>/<repo>``.

    Parameters
    ----------
    root : Path
        Folder holding the repositories.
    token : str
        The only token the token-protected routes accept.
    host : str
        Address to listen on: loopback, or ``0.0.0.0`` for clients in containers.
    """

    def __init__(self, root: Path, token: str = "test-token", host: str = "127.0.0.1") -> None:
        self.root = Path(root)
        self.token = token
        self.repos: dict[str, dict] = {}
        self.requests: list[tuple[str, dict]] = []
        self.truncate_next: int | None = None
        self.corrupt = False
        self.down = False
        self._server = ThreadingHTTPServer((host, 0), _handler_for(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self._server.server_address[0]}:{self.port}"

    def start(self) -> FakeGin:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def create_repo(self, full_name: str, description: str = "", bare: bool = False) -> Path:
        """``git init`` + ``git annex init`` a repository served as ``full_name``.

        A bare repository is what GIN holds; push to it from a clone (``git clone <path>``).
        """
        path = self.root / full_name
        path.mkdir(parents=True)
        git(path, "init", "-q", "-b", "master", *(["--bare"] if bare else []))
        git(path, "annex", "init", "-q", "fake-gin")
        self.repos[full_name] = {"path": path, "description": description}
        return path

    def commit_files(self, full_name: str, files: dict[str, bytes], annexed: tuple[str, ...] = ()) -> str:
        """Write files (annexing those in ``annexed``), commit, and return the commit id."""
        path = self.repos[full_name]["path"]
        for name, content in files.items():
            target = path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            git(path, "annex", "add", "-q", name) if name in annexed else git(path, "add", name)
        git(path, "commit", "-q", "-m", f"add {', '.join(files)}")
        return git(path, "rev-parse", "HEAD")

    def resolve(self, repo_path: Path, parts: list[str]) -> tuple[str, str] | None:
        """Split ``<ref>/<path>`` like GIN: the ref is the shortest prefix naming a branch, tag or full commit."""
        for i in range(1, len(parts)):
            ref, path = "/".join(parts[:i]), "/".join(parts[i:])
            named = any(
                subprocess.run(["git", "show-ref", "--verify", "-q", f"refs/{kind}/{ref}"], cwd=repo_path).returncode
                == 0
                for kind in ("heads", "tags")
            )
            commit = re.fullmatch(r"[0-9a-f]{40}", ref) and subprocess.run(
                ["git", "cat-file", "-e", f"{ref}^{{commit}}"], cwd=repo_path, capture_output=True
            ).returncode == 0
            if named or commit:
                return ref, path
        return None

    def content(self, repo_path: Path, ref: str, path: str) -> bytes | Path | None:
        """Bytes of a plain file, the annexed file's path for a git-annex pointer, or None."""
        done = subprocess.run(["git", "cat-file", "-p", f"{ref}:{path}"], cwd=repo_path, capture_output=True)
        if done.returncode != 0:
            return None
        blob = done.stdout
        if b"/annex/objects/" in blob and len(blob) < 512:
            key = blob.decode().strip().rsplit("/", 1)[-1]
            location = git(repo_path, "annex", "contentlocation", key)
            return repo_path / location
        return blob


def _handler_for(gin: FakeGin):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            url = urlparse(self.path)
            gin.requests.append((url.path, dict(self.headers)))
            if gin.down:
                return self._send(503, b"down for maintenance")
            parts = [part for part in url.path.split("/") if part]
            if parts[:4] == ["api", "v1", "repos", "search"]:
                return self._search(parse_qs(url.query))
            if parts[:3] == ["api", "v1", "repos"] and len(parts) >= 5:
                full_name = "/".join(parts[3:5])
                if full_name not in gin.repos:
                    return self._send(404, b"not found")
                if len(parts) == 5:
                    return self._json(200, _repo_json(full_name, gin.repos[full_name]))
                if self.headers.get("Authorization") != f"token {gin.token}":
                    return self._json(401, {"message": "token is required"})
                return self._json(200, [])
            if len(parts) >= 5 and parts[2] == "raw" and "/".join(parts[:2]) in gin.repos:
                return self._raw("/".join(parts[:2]), parts[3:])
            return self._send(404, b"not found")

        def _search(self, query: dict) -> None:
            q = query.get("q", [""])[0].lower()
            limit = min(int(query.get("limit", ["10"])[0]), 50)
            hits = [
                _repo_json(name, repo) for name, repo in gin.repos.items()
                if q == "." or q in name.lower() or q in repo["description"].lower()
            ]
            self._json(200, {"ok": True, "data": hits[:limit]})

        def _raw(self, full_name: str, parts: list[str]) -> None:
            repo_path = gin.repos[full_name]["path"]
            resolved = gin.resolve(repo_path, parts)
            content = gin.content(repo_path, *resolved) if resolved else None
            if content is None:
                return self._send(404, b"not found")
            data = content.read_bytes() if isinstance(content, Path) else content
            if gin.corrupt:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            start = 0
            match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
            if match:
                start = int(match.group(1))
                if start >= len(data):
                    return self._send(416, b"")
            body = data[start:]
            self.send_response(206 if match else 200)
            if match:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            if gin.truncate_next is not None:
                body, gin.truncate_next = body[: gin.truncate_next], None
                self.close_connection = True
            self.wfile.write(body)

        def _json(self, status: int, payload: object) -> None:
            self._send(status, json.dumps(payload).encode(), "application/json")

        def _send(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Type", content_type)
            self.end_headers()
            self.wfile.write(body)

    return Handler


def _repo_json(full_name: str, repo: dict) -> dict:
    owner, name = full_name.split("/")
    return {"full_name": full_name, "name": name, "owner": {"username": owner}, "description": repo["description"],
            "default_branch": "master", "private": False}


def make_card(model_id: str, version: str, families: list[str], task: str = "detector") -> dict:
    """A valid model card for a test model."""
    return {
        "id": model_id, "task": task, "version": version,
        "architecture": {"name": "test-mlp", "hyperparameters": {"hidden": 8}},
        "sampling_frequency_hz": 30000.0, "window_ms": {"before": 1.0, "after": 1.5},
        "geometry": {"probe_families": families}, "training_data": "random tensors (tests)",
        "metrics": {}, "licence": "CC-BY-4.0",
    }


def make_weights(path: Path, seed: int) -> dict:
    """Write seeded random tensors (about 1 MB) as safetensors to ``path``; return them."""
    import torch
    from safetensors.torch import save_file

    tensors = {"layer.weight": torch.from_numpy(np.random.default_rng(seed).normal(size=(600, 400)).astype("float32"))}
    save_file(tensors, str(path))
    return tensors


def publish(gin: FakeGin, tmp: Path, specs: list[tuple[str, str, list[str]]],
            image_defaults: tuple[str, ...] = ()) -> dict:
    """Commit weights (annexed) and then a catalog pinned to that commit; return {ref: (entry, tensors)}.

    ``specs`` are ``(id, version, probe families)``; the refs in ``image_defaults`` are marked for images.
    """
    from dlsort.models.download import sha256_of

    files, published = {}, {}
    for i, (model_id, version, families) in enumerate(specs):
        weights = tmp / f"{model_id}-{version}.safetensors"
        tensors = make_weights(weights, seed=i)
        files[f"{model_id}/{version}/weights.safetensors"] = weights.read_bytes()
        published[f"{model_id}@{version}"] = (make_card(model_id, version, families), tensors, weights)
    commit = gin.commit_files(CATALOG_REPO, files, annexed=tuple(files))
    entries = {}
    for ref, (card, tensors, weights) in published.items():
        model_id, version = ref.split("@")
        entry = {**card, "size_bytes": weights.stat().st_size, "sha256": sha256_of(weights),
                 "location": {"kind": "gin", "repo": CATALOG_REPO, "commit": commit,
                              "path": f"{model_id}/{version}/weights.safetensors"}}
        if ref in image_defaults:
            entry["image_default"] = True
        entries[ref] = (entry, tensors)
    index = {"schema_version": 1, "models": [entry for entry, _ in entries.values()]}
    gin.commit_files(CATALOG_REPO, {"index.json": json.dumps(index).encode()})
    return entries
