"""Manifests are data a user can edit: checked once, when read, with the file and the field in the message.

Every field this version interprets must have its type (``"name": 5`` or ``"imported": "x"`` is refused as
one line, not a traceback later in whichever command touches it), and every file name in it must stay in
its folder: a name with ``..`` or an absolute path could make ``models remove`` delete, or a load read,
a file elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from panet_cli.errors import PanetError

_NUMBER = (int, float)
# field -> (allowed types, what to call them); None is allowed for every optional field.
_ENTRY_FIELDS: dict[str, tuple[tuple[type, ...], str]] = {
    "tasks": ((list,), "a list of task names"),
    "arch": ((str,), "a string"),
    "config": ((dict,), "an object"),
    "level": ((int, float, list), "a number or [low, high]"),
    "scale": ((int,), "a whole number"),
    "colors": ((int,), "a whole number"),
    "default": ((bool,), "true or false"),
    "origin": ((str,), "a string"),
    "source": ((dict,), "an object"),
    "imported": ((dict,), "an object"),
    "sha256": ((str,), "a string"),
    "size": ((int,), "a whole number"),
    "params": ((int,), "a whole number"),
}
_SOURCE_FIELDS = {"shipped": ((str,), "a file name"), "hub": ((dict,), "an object"), "manual": ((dict,), "an object")}
_IMPORTED_FIELDS = {"sha256": ((str,), "a string"), "size": ((int,), "a whole number"),
                    "source_file": ((str,), "a string"), "source_sha256": ((str,), "a string")}
_HUB_FIELDS = {"repo": ((str,), "a string"), "revision": ((str,), "a string"), "filename": ((str,), "a file name")}


def check_manifest(data: Any, path: Path) -> None:
    """PanetError naming ``path`` and the field when ``data`` is not a well-formed manifest."""
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise PanetError(f"model manifest {path} has no 'models' list")
    hub = data.get("hub")
    if hub is not None:
        _check_fields(hub, _HUB_FIELDS, path, "hub")
    for k, entry in enumerate(data["models"]):
        where = f"models[{k}]"
        if not isinstance(entry, dict):
            raise _bad(path, where, "an object", entry)
        if isinstance(entry.get("name"), str):
            where += f" ({entry['name']})"
        if not isinstance(entry.get("name"), str) or not entry["name"]:
            raise _bad(path, f"{where}.name", "a non-empty string", entry.get("name"))
        # A user's entry may complete a shipped one of the same name (an authors' file imported): no task then.
        if "task" in entry and (not isinstance(entry["task"], str) or not entry["task"]):
            raise _bad(path, f"{where}.task", "a non-empty string", entry["task"])
        _check_fields(entry, _ENTRY_FIELDS, path, where)
        if entry.get("tasks") is not None and not all(isinstance(t, str) for t in entry["tasks"]):
            raise _bad(path, f"{where}.tasks", "a list of task names", entry["tasks"])
        level = entry.get("level")
        if isinstance(level, list) and (len(level) != 2 or not all(_is_number(v) for v in level)):
            raise _bad(path, f"{where}.level", "a number or [low, high]", level)
        if isinstance(level, bool):
            raise _bad(path, f"{where}.level", "a number or [low, high]", level)
        source = entry.get("source") or {}
        _check_fields(source, _SOURCE_FIELDS, path, f"{where}.source")
        if source.get("shipped") is not None:
            _check_file_name(source["shipped"], path, f"{where}.source.shipped", subfolders=True)
        if source.get("hub") is not None:
            _check_fields(source["hub"], _HUB_FIELDS, path, f"{where}.source.hub")
            if source["hub"].get("filename") is not None:
                _check_file_name(source["hub"]["filename"], path, f"{where}.source.hub.filename", subfolders=True)
        imported = entry.get("imported")
        if imported is not None:
            _check_fields(imported, _IMPORTED_FIELDS, path, f"{where}.imported")
            if not isinstance(imported.get("file"), str):
                raise _bad(path, f"{where}.imported.file", "a file name", imported.get("file"))
            _check_file_name(imported["file"], path, f"{where}.imported.file", subfolders=False)


def inside(folder: Path, name: str, what: str) -> Path:
    """``folder / name``, refused (PanetError) when it would lead outside ``folder``; symlinks are followed."""
    target = folder / name
    base = os.path.realpath(folder)
    resolved = os.path.realpath(target)
    if os.path.commonpath([base, resolved]) != base or resolved == base:
        raise PanetError(f"{what} {name!r} is outside its folder {folder}: refused")
    return target


def _check_fields(obj: Any, fields: dict[str, tuple[tuple[type, ...], str]], path: Path, where: str) -> None:
    if not isinstance(obj, dict):
        raise _bad(path, where, "an object", obj)
    for key, (types, wanted) in fields.items():
        value = obj.get(key)
        if value is not None and (not isinstance(value, types) or (isinstance(value, bool) and bool not in types)):
            raise _bad(path, f"{where}.{key}", wanted, value)


def _check_file_name(name: str, path: Path, where: str, *, subfolders: bool) -> None:
    """A relative name that stays in its folder (no '..', not absolute; no folders at all unless allowed)."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    bad = (not name or PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute()
           or PureWindowsPath(name).drive or ".." in parts or (not subfolders and len(parts) != 1))
    if bad:
        raise PanetError(f"model manifest {path}: {where} {name!r} is outside the model folder: refused")


def _is_number(value: Any) -> bool:
    return isinstance(value, _NUMBER) and not isinstance(value, bool)


def _bad(path: Path, where: str, wanted: str, value: Any) -> PanetError:
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    return PanetError(f"model manifest {path}: {where} must be {wanted}, not {shown}")
