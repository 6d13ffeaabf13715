"""Maintainer tools: rewrite the shipped entries of the manifest from the files in ``weights/``."""

from __future__ import annotations

import json
from pathlib import Path

from panet_cli import hub, paths
from panet_cli.errors import PanetError
from panet_cli.registry.headers import count_parameters, read_safetensors_header
from panet_cli.registry.specs import _read_json, _write_json
from panet_cli.tasks import task_spec

_TRAINING_KEYS = ("step", "val_psnr", "attention_enabled", "recipe", "data")


def refresh_shipped(manifest: Path | None = None) -> list[str]:
    """Recompute sha256, size, parameters, architecture and validation score of every shipped file present.

    Returns one line per changed model. Entries whose file is absent are left as they are (not yet trained).
    """
    manifest = manifest or paths.manifest_path()
    data = _read_json(manifest)
    changes = []
    for entry in data["models"]:
        shipped = (entry.get("source") or {}).get("shipped")
        if not shipped or not (manifest.parent / shipped).is_file():
            continue
        file = manifest.parent / shipped
        shapes, meta = read_safetensors_header(file)
        if meta.get("task") not in (None, entry["task"]):
            raise PanetError(f"{file} was trained for {meta.get('task')}, "
                             f"but {entry['name']} is a {entry['task']} model")
        before = json.dumps(entry, sort_keys=True)
        entry.update(sha256=hub.sha256_of(file), size=file.stat().st_size, params=count_parameters(shapes))
        for key in ("arch", "config"):
            if key in meta:
                entry[key] = meta[key]
        if isinstance(entry.get("config"), dict) and "n_colors" in entry["config"]:
            entry["colors"] = entry["config"]["n_colors"]
        recipe = meta.get("recipe") or {}
        row = task_spec(entry["task"])
        level = row.level.name if row.level is not None else None  # the recipe's keys: sigma_min, val_sigma
        if level is not None and f"{level}_min" in recipe:
            entry["level"] = [recipe[f"{level}_min"], recipe[f"{level}_max"]]
        elif row.scaled and meta.get("scale"):
            entry["scale"] = meta["scale"]
        elif row.bayer and recipe.get("pattern"):
            entry["pattern"] = recipe["pattern"]
        entry["training"] = {k: meta[k] for k in _TRAINING_KEYS if k in meta}
        if "val_psnr" in meta:
            at = (f"{row.level.word} {recipe.get(f'val_{level}')}" if row.level is not None
                  else f"x{meta.get('scale')}" if row.scaled else row.name)
            entry.setdefault("scores", {})["validation"] = {"PSNR": meta["val_psnr"], "at": at,
                                                           "step": meta.get("step")}
        entry.setdefault("source", {}).setdefault("hub", {"filename": Path(shipped).name})
        if json.dumps(entry, sort_keys=True) != before:
            changes.append(f"{entry['name']}: sha256 {entry['sha256'][:12]}, {entry['size']} bytes, "
                           f"{entry['params']} parameters")
    _write_json(manifest, data)
    return changes


def set_hub_revision(revision: str, manifest: Path | None = None) -> None:
    """Pin the revision of our hub repo (after uploading the shipped files there)."""
    manifest = manifest or paths.manifest_path()
    data = _read_json(manifest)
    data.setdefault("hub", {})["revision"] = revision
    _write_json(manifest, data)
