"""All huggingface_hub use: cached lookups, pinned downloads, sha256 checks, offline handling.

Downloads go through ``hf_hub_download`` into the user's hub cache (``HF_HOME``), pinned to a revision, and are
checked byte for byte against the sha256 of the manifest; a file that fails is deleted, never used.

huggingface_hub reads ``HF_ENDPOINT``, ``HF_HOME`` and ``HF_HUB_OFFLINE`` once, when it is first imported; the
endpoint, cache folder and offline switch are therefore read from the environment here, at call time, and passed
explicitly. Its read timeout for the body (``HF_HUB_DOWNLOAD_TIMEOUT``) can only be set before that import.

huggingface_hub retries a failed metadata request for up to a minute per attempt before giving up when nothing is
cached. A command line tool should answer in seconds, so :func:`download` first asks for the file's metadata once,
with a bounded timeout and no retries, and only then hands over to ``hf_hub_download``.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from panet_cli.errors import ModelUnavailable, one_line
from panet_cli.files import sha256_of
from panet_cli.paths import hub_cache_dir

DEFAULT_ENDPOINT = "https://huggingface.co"
DEFAULT_ETAG_TIMEOUT = 10.0

# (bytes done, total bytes or None)
ProgressCallback = Callable[[int, "int | None"], None]

_TRUE = {"1", "on", "yes", "true"}


@dataclass(frozen=True)
class HubFile:
    """One file of a hub repo at a pinned revision, with the bytes we expect."""

    repo: str
    filename: str
    revision: str
    sha256: str | None = None
    size: int | None = None

    def describe(self) -> str:
        """Human-readable "which file" for messages: enough to fetch it by hand."""
        return f"{self.filename} from {endpoint()}/{self.repo} (revision {self.revision})"


def endpoint() -> str:
    """The hub's base URL: ``HF_ENDPOINT`` now, else the public hub."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def is_offline() -> bool:
    """``HF_HUB_OFFLINE`` as set now, or as huggingface_hub saw it when it was imported."""
    if (os.environ.get("HF_HUB_OFFLINE") or "").strip().lower() in _TRUE:
        return True
    constants = sys.modules.get("huggingface_hub.constants")
    return bool(constants is not None and getattr(constants, "HF_HUB_OFFLINE", False))


def etag_timeout() -> float:
    """Seconds to wait for the file's metadata: ``HF_HUB_ETAG_TIMEOUT`` or 10."""
    try:
        return float(os.environ.get("HF_HUB_ETAG_TIMEOUT") or DEFAULT_ETAG_TIMEOUT)
    except ValueError:
        return DEFAULT_ETAG_TIMEOUT


def cached_path(file: HubFile) -> Path | None:
    """The file in the hub cache, or None; never touches the network."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(file.repo, file.filename, cache_dir=str(hub_cache_dir()), revision=file.revision)
    return Path(found) if isinstance(found, str) else None


def remove_cached(file: HubFile) -> bool:
    """Delete the cached file and the blob behind it; True if something was there."""
    path = cached_path(file)
    if path is None:
        return False
    _delete_cache_entry(path)
    return True


def _delete_cache_entry(path: Path) -> None:
    """Remove a snapshot entry and its blob (the snapshot entry is usually a symlink to it)."""
    blob = Path(os.path.realpath(path))
    path.unlink(missing_ok=True)
    if blob != path:
        blob.unlink(missing_ok=True)


def verify(path: Path, file: HubFile) -> None:
    """Raise (after deleting the cached file) when its bytes are not the ones the manifest pins."""
    if file.sha256 is None:
        return
    actual = sha256_of(path)
    if actual != file.sha256.lower():
        _delete_cache_entry(path)
        raise ModelUnavailable(
            f"{file.describe()} failed its checksum (sha256 {actual[:16]}..., expected {file.sha256[:16]}...): "
            "the file was deleted from the cache; try again, and if it fails again the hub copy is not the one "
            "this version of panet expects"
        )


def download(file: HubFile, *, progress: ProgressCallback | None = None, advice: str = "") -> Path:
    """Local path of ``file``: from the cache if there, else downloaded, in both cases sha256-checked.

    Raises ModelUnavailable saying which file was wanted and why it could not be had, followed by ``advice``.
    """
    tail = f"; {advice}" if advice else ""
    local = cached_path(file)
    if local is not None:
        verify(local, file)
        return local
    if is_offline():
        raise ModelUnavailable(f"{file.describe()} is not in the cache and downloads are off (HF_HUB_OFFLINE){tail}")

    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url

    base = endpoint()
    timeout = etag_timeout()
    try:
        # One bounded metadata request first: fails fast where hf_hub_download would retry for minutes.
        url = hf_hub_url(file.repo, file.filename, revision=file.revision, endpoint=base)
        get_hf_file_metadata(url, timeout=timeout, endpoint=base)
        found = hf_hub_download(
            file.repo,
            file.filename,
            revision=file.revision,
            cache_dir=str(hub_cache_dir()),
            endpoint=base,
            etag_timeout=timeout,
            tqdm_class=_progress_class(progress) if progress is not None else None,
        )
    except (OSError, *_transport_errors()) as error:
        raise ModelUnavailable(f"cannot download {file.describe()}: {_explain(error, file, timeout)}{tail}") from None
    path = Path(found)
    verify(path, file)
    return path


def _explain(error: BaseException, file: HubFile, timeout: float) -> str:
    """One phrase for a failed hub request (the exception's own text is multi-line and generic)."""
    from huggingface_hub import errors

    if isinstance(error, errors.OfflineModeIsEnabled):
        return "downloads are off (HF_HUB_OFFLINE)"
    if isinstance(error, errors.RepositoryNotFoundError):
        return f"the hub has no repository {file.repo} (or it is private)"
    if isinstance(error, errors.RevisionNotFoundError):
        return "the hub has no such revision"
    if isinstance(error, errors.HfHubHTTPError):
        status = getattr(error.response, "status_code", None)
        return "the hub has no such file (HTTP 404)" if status == 404 else f"the hub answered HTTP {status}"
    for kind in _timeout_errors():
        if isinstance(error, kind):
            return f"the hub did not answer within {timeout:g} s"
    for kind in _transport_errors():
        if isinstance(error, kind):
            return f"cannot reach {endpoint()} ({type(error).__name__}: {one_line(error)})"
    if isinstance(error, errors.LocalEntryNotFoundError):
        cause = error.__cause__
        return _explain(cause, file, timeout) if cause is not None else "cannot reach the hub"
    return one_line(error)




def _timeout_errors() -> tuple[type[BaseException], ...]:
    """Timeout classes of whichever HTTP client this huggingface_hub uses (httpx2, httpx or requests)."""
    return _client_errors("TimeoutException", "Timeout")


def _transport_errors() -> tuple[type[BaseException], ...]:
    return _client_errors("TransportError", "RequestException")


def _client_errors(httpx_name: str, requests_name: str) -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = []
    for module_name, attribute in (("httpx2", httpx_name), ("httpx", httpx_name), ("requests", requests_name)):
        if module_name not in sys.modules:
            continue  # a client that was never imported raised nothing
        kind = getattr(importlib.import_module(module_name), attribute, None)
        if isinstance(kind, type):
            found.append(kind)
    return tuple(found)


def _progress_class(callback: ProgressCallback) -> type:
    """A tqdm look-alike (the interface ``hf_hub_download`` drives) that reports to ``callback``."""

    class _Progress:
        def __init__(self, *args: Any, total: int | None = None, initial: int = 0, **kwargs: Any) -> None:
            self.n = initial
            self.total = total
            callback(self.n, self.total)

        def update(self, n: int = 1) -> None:
            self.n += n
            callback(self.n, self.total)

        def close(self) -> None:
            """Nothing to release: the caller owns the display."""

        def __enter__(self) -> "_Progress":
            return self

        def __exit__(self, *exc: object) -> None:
            self.close()

    return _Progress
