"""``panet models import`` / ``remove``: the user's own model folder and manifest."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from panet_cli import hub, paths
from panet_cli.errors import IncompatibleModel, PanetError
from panet_cli.registry.headers import count_parameters, read_safetensors_header
from panet_cli.registry.lookup import _imported_path, _shipped_path, hub_file
from panet_cli.registry.specs import ModelSpec, _write_json, all_specs, get_spec, load_user_manifest


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "model"


def _published_match(filename: str) -> ModelSpec | None:
    for spec in all_specs():
        if spec.manual and spec.manual.get("file") == filename:
            return spec
    return None


def import_model(path: str | Path, *, name: str | None = None, task: str | None = None,
                 level: float | None = None, force: bool = False) -> ModelSpec:
    """Convert a published ``.pt`` or one of our safetensors into the user's model folder and register it.

    The architecture is detected from the tensors (refusing files that fit none); a file named like one of the
    authors' published checkpoints takes that model's name, task and level unless told otherwise.
    """
    source = Path(path).expanduser()
    if not source.is_file():
        raise PanetError(f"cannot import {source}: no such file")
    published = _published_match(source.name)
    name = name or (published.name if published else _slug(source.stem))
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise PanetError(f"model name {name!r} may use only letters, digits, '.', '_' and '-'")
    known = {s.name: s for s in all_specs()}
    existing = known.get(name)
    if existing is not None and existing.origin != "imported" and not existing.manual:
        raise PanetError(f"{name} is the name of a model that ships with panet; choose another --name")
    if existing is not None and existing.imported and not force:
        raise PanetError(f"a model called {name} is already imported; pass --force to replace it")
    if published is not None and published.name == name:
        task = task or published.task
        level = level if level is not None else published.level

    from panet_cli.loading import load_model

    probe = load_model(source)  # raises CheckpointError for files of the wrong kind
    task = task or probe.task or (probe.tasks[0] if len(probe.tasks) == 1 else None)
    if task is None:
        raise PanetError(f"{source.name} can serve {' or '.join(probe.tasks)}: say which with --task")
    if task not in probe.tasks:
        raise IncompatibleModel(f"{source.name} is a {probe.arch} for {'/'.join(probe.tasks)}, not {task}")
    if existing is not None and existing.manual and (existing.task != task or existing.arch != probe.arch
                                                      or (existing.scale or 1) != probe.scale):
        raise IncompatibleModel(f"{source.name} does not fit {name} ({existing.arch} for {existing.task} "
                                f"{existing.level_text}); choose another --name")
    level = level if level is not None else probe.level
    folder = paths.user_models_dir()
    target = folder / f"{name}.safetensors"
    existed = target.exists()
    try:
        entry = _install(source, target, name=name, task=task, level=level)
        user = load_user_manifest()
        user["models"] = [e for e in user["models"] if e.get("name") != name] + [entry]
        _write_json(paths.user_manifest_path(), user)
    except OSError as e:  # PANET_HOME is a file, a full disk, a read-only folder ...
        if not existed:
            _remove_quietly(target)  # no model file without its manifest entry
        raise PanetError(f"cannot import {source.name} into {folder} ({e.strerror or e})") from None
    return get_spec(name)


def _install(source: Path, target: Path, *, name: str, task: str, level: float | None) -> dict[str, Any]:
    """Convert ``source`` to ``target``; the manifest entry describing it."""
    from panet_cli.loading.convert import convert_checkpoint

    descriptor = convert_checkpoint(source, target, name=name, task=task, level=level)
    source_sha = (descriptor.metadata.get("provenance") or {}).get("source_sha256") or hub.sha256_of(source)
    header_tensors, _ = read_safetensors_header(target)
    entry: dict[str, Any] = {
        "name": name,
        "task": task,
        "tasks": list(descriptor.tasks) if task in descriptor.tasks else [task],
        "arch": descriptor.arch,
        "config": descriptor.config,
        "colors": descriptor.n_colors,
        "params": count_parameters(header_tensors),
        "origin": "imported",
        "provenance": f"imported by the user from {source.name} (sha256 {source_sha})",
        "imported": {"file": target.name, "sha256": hub.sha256_of(target), "size": target.stat().st_size,
                     "source_file": source.name, "source_sha256": source_sha},
    }
    if descriptor.scale > 1:
        entry["scale"] = descriptor.scale
    if level is not None:
        entry["level"] = level
    return entry


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass  # the import failed already; that is the error worth reporting


def remove_model(name: str) -> str:
    """Delete an imported model or a downloaded copy; shipped and manual-only models are refused."""
    spec = get_spec(name)
    removed = []
    imported = _imported_path(spec)
    if imported is not None:
        try:
            imported.unlink(missing_ok=True)
            user = load_user_manifest()
            user["models"] = [e for e in user["models"] if e.get("name") != name]
            _write_json(paths.user_manifest_path(), user)
        except OSError as e:
            raise PanetError(f"cannot remove {name} from {paths.user_models_dir()} ({e.strerror or e})") from None
        removed.append(f"imported file {imported}")
    file = hub_file(spec)
    if file is not None and hub.remove_cached(file):
        removed.append("cached download")
    if removed:
        return f"removed {name}: {' and '.join(removed)}"
    shipped = _shipped_path(spec)
    if shipped is not None and shipped.is_file():
        raise PanetError(f"{name} ships with panet ({shipped}) and cannot be removed")
    raise PanetError(f"{name} is not installed: nothing to remove")
