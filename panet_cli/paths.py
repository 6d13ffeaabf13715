"""Where model files live: the manifest and shipped weights, the user's model folder, the hub cache.

Every location is computed when asked (never at import time) so that environment variables set by a
test or a wrapper script after ``import panet_cli`` still take effect.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

MANIFEST_NAME = "manifest.json"


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value).expanduser() if value else None


def panet_home() -> Path:
    """Root of everything panet writes for the user: ``PANET_HOME``, else the platform's user data dir.

    Never inside the installed package, which may be read-only or shared between users.
    """
    home = _env_path("PANET_HOME")
    if home is not None:
        return home
    from platformdirs import user_data_path

    return user_data_path("panet", appauthor=False)


def user_models_dir() -> Path:
    """Imported models (converted to safetensors) and their manifest ``manifest.json``."""
    return panet_home() / "models"


def user_manifest_path() -> Path:
    """The user's manifest of imported models (same entry format as the shipped one)."""
    return user_models_dir() / MANIFEST_NAME


def manifest_path() -> Path:
    """The registry of known models.

    ``PANET_MANIFEST`` wins (tests, or a maintainer trying a new manifest); then ``weights/manifest.json`` of a
    source checkout; then ``<prefix>/share/panet/manifest.json``, where a wheel can install it as data-files.
    A missing manifest is returned anyway: the registry reports it as a one-line error.
    """
    override = _env_path("PANET_MANIFEST")
    if override is not None:
        return override
    candidates = [
        Path(__file__).resolve().parent.parent / "weights" / MANIFEST_NAME,
        Path(sys.prefix) / "share" / "panet" / MANIFEST_NAME,
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return candidates[0]


def shipped_weights_dir() -> Path:
    """Folder the manifest's shipped file names are relative to: the manifest's own folder."""
    return manifest_path().parent


def hub_cache_dir() -> Path:
    """The huggingface_hub cache, resolved from the environment now.

    huggingface_hub reads ``HF_HOME``/``HF_HUB_CACHE`` once, when it is imported; passing the folder explicitly
    keeps later changes (and a process that imported it early) consistent with what the user set.
    """
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        value = _env_path(name)
        if value is not None:
            return value
    hf_home = _env_path("HF_HOME")
    if hf_home is not None:
        return hf_home / "hub"
    xdg = _env_path("XDG_CACHE_HOME")
    return (xdg if xdg is not None else Path.home() / ".cache") / "huggingface" / "hub"
