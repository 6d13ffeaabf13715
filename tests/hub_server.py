"""A small stand-in for the Hugging Face hub's file endpoints, on 127.0.0.1, for download tests.

It answers ``HEAD``/``GET /{org}/{repo}/resolve/{revision}/{filename}`` with the headers huggingface_hub's
``file_download.py`` reads (``X-Repo-Commit``, ``ETag``/``X-Linked-Etag``, ``X-Linked-Size``, ``Content-Length``)
and can misbehave on request: answer 404 or 500, serve altered bytes, or hang without answering.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<filename>.+)$")
MODES = ("ok", "404", "500", "hang", "corrupt")


@dataclass
class FakeHub:
    """Files by (repo, filename), one commit hash; ``mode`` picks the behaviour; ``requests`` logs what came."""

    commit: str
    files: dict[tuple[str, str], bytes] = field(default_factory=dict)
    mode: str = "ok"
    requests: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the server first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FakeHub":
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def do_HEAD(self) -> None:  # noqa: N802 (http.server naming)
                hub._answer(self, body=False)

            def do_GET(self) -> None:  # noqa: N802
                hub._answer(self, body=True)

        self._release.clear()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop answering; the port is closed afterwards (connections are refused)."""
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _answer(self, handler: BaseHTTPRequestHandler, body: bool) -> None:
        self.requests.append((handler.command, handler.path))
        match = RESOLVE.match(handler.path.split("?")[0])
        if self.mode == "hang":
            self._release.wait(30)
            return
        if match is None:
            self._send(handler, 404, {"X-Error-Code": "RepoNotFound"}, b"", body)
            return
        key = (match["repo"], match["filename"])
        if self.mode == "500":
            self._send(handler, 500, {}, b"internal error", body)
            return
        if key not in self.files or self.mode == "404" or match["revision"] not in (self.commit, "main"):
            self._send(handler, 404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": self.commit}, b"", body)
            return
        data = self.files[key]
        sha = hashlib.sha256(data).hexdigest()
        if self.mode == "corrupt":  # same size, one byte changed: only a checksum notices
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        headers = {
            "X-Repo-Commit": self.commit,
            "ETag": f'"{sha}"',
            "X-Linked-Etag": f'"{sha}"',
            "X-Linked-Size": str(len(data)),
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        self._send(handler, 200, headers, data, body)

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str], data: bytes, body: bool) -> None:
        handler.send_response(status)
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if body:
            handler.wfile.write(data)


def write_tiny_model(path, *, task: str = "denoise", colors: int = 3, seed: int = 0) -> bytes:
    """A tiny PANet saved in our safetensors format; returns the file's bytes."""
    from pathlib import Path

    import torch

    from panet_cli.loading.checkpoint import save_safetensors
    from panet_cli.networks import PANet

    config = {"n_resblocks": 2, "n_feats": 8, "n_colors": colors}
    torch.manual_seed(seed)
    model = PANet(**config)
    save_safetensors(path, model.state_dict(), {"arch": "PANet", "config": config, "task": task,
                                                "recipe": {"task": task, "sigma_min": 0.0, "sigma_max": 50.0},
                                                "val_psnr": 30.5, "step": 7})
    return Path(path).read_bytes()


def write_manifest(path, models: list[dict], *, repo: str = "test/panet-models", revision: str | None = None) -> None:
    """A manifest in the shipped format, for tests that must not depend on the real one."""
    import json
    from pathlib import Path

    Path(path).write_text(json.dumps({"format": 1, "hub": {"repo": repo, "revision": revision}, "models": models}))


def hub_entry(name: str, data: bytes, *, task: str = "denoise", filename: str | None = None, **extra) -> dict:
    """Manifest entry for a model that lives on the hub (sha256 and size of ``data``)."""
    entry = {"name": name, "task": task, "arch": "PANet", "default": True, "colors": 3,
             "source": {"hub": {"filename": filename or f"{name}.safetensors"}},
             "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    entry.update(extra)
    return entry
