"""Downloads through the real ``panet models download`` against a fake hub on 127.0.0.1.

huggingface_hub reads HF_ENDPOINT, HF_HOME, HF_HUB_OFFLINE and its timeouts when it is imported, so every
download runs the installed ``panet`` entry point in a subprocess with the environment set. Nothing here can
reach the internet: HF_ENDPOINT points at the fake hub and HF_HOME / PANET_HOME at temporary folders.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hub_server import FakeHub, hub_entry, write_manifest, write_tiny_model

COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO = "test/panet-models"
FILENAME = "tiny-denoise.safetensors"
PANET = shutil.which("panet", path=str(Path(sys.executable).parent)) or shutil.which("panet")


@pytest.fixture(scope="module")
def tiny_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return write_tiny_model(tmp_path_factory.mktemp("model") / "tiny.safetensors")


@pytest.fixture
def fake_hub(tiny_bytes: bytes):
    hub = FakeHub(commit=COMMIT, files={(REPO, FILENAME): tiny_bytes}).start()
    yield hub
    hub.stop()


@pytest.fixture
def env(tmp_path: Path, tiny_bytes: bytes, fake_hub: FakeHub) -> dict[str, str]:
    manifest = tmp_path / "weights" / "manifest.json"
    manifest.parent.mkdir()
    write_manifest(manifest, [hub_entry("tiny-denoise", tiny_bytes, level=[0, 50])], repo=REPO, revision=COMMIT)
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "PANET_", "HUGGINGFACE_"))}
    environ.update(
        PANET_MANIFEST=str(manifest),
        PANET_HOME=str(tmp_path / "panet-home"),
        HF_HOME=str(tmp_path / "hf-home"),
        HF_ENDPOINT=fake_hub.url,
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_ETAG_TIMEOUT="2",
        HF_HUB_DOWNLOAD_TIMEOUT="2",
        COLUMNS="200",
    )
    return environ


def panet(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    assert PANET is not None, "the panet entry point is not installed in this environment"
    return subprocess.run([PANET, *args], env=env, capture_output=True, text=True, timeout=timeout)


def cache_files(env: dict[str, str]) -> list[Path]:
    """Every regular file or link the download left in the hub cache (ignoring locks and refs)."""
    root = Path(env["HF_HOME"]) / "hub"
    return sorted(p for p in root.rglob("*") if (p.is_file() or p.is_symlink())
                  and {"blobs", "snapshots"} & set(p.relative_to(root).parts))


def test_download_then_cache_hit_without_server(env: dict[str, str], fake_hub: FakeHub, tiny_bytes: bytes) -> None:
    first = panet(env, "models", "download", "tiny-denoise")
    assert first.returncode == 0, first.stderr
    snapshot = Path(env["HF_HOME"]) / "hub" / f"models--{REPO.replace('/', '--')}" / "snapshots" / COMMIT / FILENAME
    assert snapshot.read_bytes() == tiny_bytes
    assert str(snapshot) in first.stderr
    assert ("GET", f"/{REPO}/resolve/{COMMIT}/{FILENAME}") in fake_hub.requests

    fake_hub.stop()
    again = panet(env, "models", "download", "tiny-denoise")
    assert again.returncode == 0, again.stderr
    listed = json.loads(panet(env, "models", "list", "--json").stdout)
    assert [m["status"] for m in listed if m["name"] == "tiny-denoise"] == ["cached"]

    offline = panet({**env, "HF_HUB_OFFLINE": "1"}, "models", "download", "tiny-denoise")
    assert offline.returncode == 0, offline.stderr


def test_offline_without_cache_says_what_to_fetch(env: dict[str, str], fake_hub: FakeHub) -> None:
    result = panet({**env, "HF_HUB_OFFLINE": "1"}, "models", "download", "tiny-denoise")
    assert result.returncode == 1
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1, message
    for needle in (FILENAME, REPO, COMMIT, "HF_HUB_OFFLINE", "panet models import PATH --name tiny-denoise"):
        assert needle in message
    assert fake_hub.requests == []


def test_corrupted_download_is_deleted(env: dict[str, str], fake_hub: FakeHub) -> None:
    fake_hub.mode = "corrupt"
    result = panet(env, "models", "download", "tiny-denoise")
    assert result.returncode == 1
    assert "checksum" in result.stderr and "deleted" in result.stderr
    assert cache_files(env) == []
    # a good copy afterwards downloads normally
    fake_hub.mode = "ok"
    assert panet(env, "models", "download", "tiny-denoise").returncode == 0
    assert len([p for p in cache_files(env) if "blobs" in p.parts]) == 1


FAILURES = [("404", "HTTP 404"), ("500", "HTTP 500"), ("hang", "did not answer within 2 s")]


@pytest.mark.parametrize("mode, phrase", FAILURES)
def test_server_failures_end_quickly_with_advice(env: dict[str, str], fake_hub: FakeHub, mode: str,
                                                 phrase: str) -> None:
    fake_hub.mode = mode
    start = time.monotonic()
    result = panet(env, "models", "download", "tiny-denoise", timeout=30)
    elapsed = time.monotonic() - start
    assert result.returncode == 1
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert phrase in message and FILENAME in message and "panet models import" in message
    assert "Traceback" not in result.stderr
    assert elapsed < 15, f"took {elapsed:.1f} s"
    assert cache_files(env) == []


def test_sha256_of_manifest_is_what_is_checked(env: dict[str, str], fake_hub: FakeHub, tiny_bytes: bytes) -> None:
    """A manifest pinning other bytes refuses the (intact) hub file: the manifest is the authority."""
    manifest = Path(env["PANET_MANIFEST"])
    data = json.loads(manifest.read_text())
    data["models"][0]["sha256"] = hashlib.sha256(b"something else").hexdigest()
    manifest.write_text(json.dumps(data))
    result = panet(env, "models", "download", "tiny-denoise")
    assert result.returncode == 1 and "checksum" in result.stderr
    assert cache_files(env) == []


def test_repo_flag_and_env_pick_a_mirror(env: dict[str, str], fake_hub: FakeHub, tiny_bytes: bytes) -> None:
    fake_hub.files[("mirror/weights", FILENAME)] = tiny_bytes
    result = panet(env, "models", "download", "tiny-denoise", "--repo", "mirror/weights")
    assert result.returncode == 0, result.stderr
    assert ("GET", f"/mirror/weights/resolve/main/{FILENAME}") in fake_hub.requests
    fake_hub.requests.clear()
    result = panet({**env, "PANET_HUB_REPO": "mirror/weights", "PANET_HUB_REVISION": COMMIT},
                   "models", "download", "tiny-denoise")
    assert result.returncode == 0, result.stderr
    assert all(path.startswith("/mirror/weights/") for _, path in fake_hub.requests)


def test_list_on_fresh_install_never_touches_network(tmp_path: Path, fake_hub: FakeHub) -> None:
    """The real manifest, empty homes, a hub that logs every request: list and info make none, nor import torch."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "PANET_", "HUGGINGFACE_"))}
    environ.update(PANET_HOME=str(tmp_path / "home"), HF_HOME=str(tmp_path / "hf"), HF_ENDPOINT=fake_hub.url)
    code = (
        "import sys\n"
        "from panet_cli.cli.app import app\n"
        "for args in (['models', 'list'], ['models', 'info', 'panet-denoise-blind']):\n"
        "    try:\n"
        "        app(args)\n"
        "    except SystemExit as e:\n"
        "        assert not e.code, e.code\n"
        "assert 'torch' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "panet-denoise-blind" in result.stdout and "official-sr-x4" in result.stdout
    assert fake_hub.requests == []
    assert not (tmp_path / "home").exists(), "listing must not create the user folder"


def test_unreachable_hub_without_cache(env: dict[str, str], fake_hub: FakeHub) -> None:
    fake_hub.stop()
    start = time.monotonic()
    result = panet(env, "models", "download", "tiny-denoise")
    assert result.returncode == 1
    assert f"cannot reach {env['HF_ENDPOINT']}" in result.stderr and "panet models import" in result.stderr
    assert time.monotonic() - start < 15
