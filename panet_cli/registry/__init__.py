"""Known models as data: which exist, where their bytes are, and which one a task uses by default.

The specs live in ``weights/manifest.json`` (see :func:`panet_cli.paths.manifest_path`); models a user imported
live in a second manifest in their model folder. Where a model's file comes from is decided in one place,
:func:`local_path` and :func:`resolve`: shipped file, imported file, hub cache, download, in that order.
Listing and status never touch the network.

Maintainers: ``python -m panet_cli.registry --refresh-shipped`` rewrites sha256, size, parameters, config and
validation scores of the shipped files into the manifest, so adding a trained model is one command.
"""

from __future__ import annotations

from panet_cli import hub
from panet_cli.registry.headers import count_parameters, read_safetensors_header
from panet_cli.registry.lookup import (
    STATUSES, advice, candidates, find_model, hub_file, local_path, resolve, status,
)
from panet_cli.registry.maintain import refresh_shipped, set_hub_revision
from panet_cli.registry.specs import (
    MANIFEST_FORMAT, TASKS, ModelSpec, all_specs, get_spec, load_manifest, load_user_manifest,
)
from panet_cli.registry.user_models import import_model, remove_model

__all__ = [
    "MANIFEST_FORMAT", "STATUSES", "TASKS", "ModelSpec", "advice", "all_specs", "candidates", "count_parameters",
    "find_model", "get_spec", "hub", "hub_file", "import_model", "load_manifest", "load_user_manifest", "local_path",
    "read_safetensors_header", "refresh_shipped", "remove_model", "resolve", "set_hub_revision", "status",
]
