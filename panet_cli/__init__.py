"""panet: image restoration with Pyramid Attention Networks.

The public API is imported lazily so that ``panet --version`` and ``--help`` start without torch::

    from panet_cli import load_model, read_image, restore, write_image
    image = read_image("photo.png")
    clean = restore(image.pixels, "denoise", level=25)
    write_image("photo_denoised.png", image.replace(pixels=clean))
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {
    "load_model": "panet_cli.loading",
    "ModelDescriptor": "panet_cli.loading",
    "restore": "panet_cli.inference",
    "RestoreOptions": "panet_cli.inference",
    "read_image": "panet_cli.images",
    "write_image": "panet_cli.images",
    "LoadedImage": "panet_cli.images",
    "find_model": "panet_cli.registry",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'panet_cli' has no attribute {name!r}")
