"""Model specs: the shipped manifest and the user's manifest of imports, read into :class:`ModelSpec`."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from panet_cli import paths
from panet_cli.errors import ModelUnavailable, PanetError
from panet_cli.files import atomic_open
from panet_cli.registry.validate import check_manifest
from panet_cli.tasks import TASK_NAMES, task_spec

TASKS = TASK_NAMES
MANIFEST_FORMAT = 1


@dataclass(frozen=True)
class ModelSpec:
    """One manifest entry. ``raw`` keeps every field, including ones this version does not interpret."""

    name: str
    task: str
    tasks: tuple[str, ...]
    arch: str | None = None
    config: dict[str, Any] | None = None
    level: float | None = None
    level_range: tuple[float, float] | None = None
    scale: int | None = None
    colors: int | None = None
    default: bool = False
    origin: str = "ours"
    shipped: str | None = None
    hub: dict[str, Any] | None = None
    manual: dict[str, Any] | None = None
    imported: dict[str, Any] | None = None
    sha256: str | None = None
    size: int | None = None
    params: int | None = None
    hub_defaults: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def level_text(self) -> str:
        """Level or scale as people write it: ``sigma 25``, ``q 10-60``, ``x4``, ``RGGB``."""
        row = task_spec(self.task) if self.task in TASKS else None
        if row is not None and row.scaled:
            return f"x{self.scale}" if self.scale else "-"
        word = row.level.word if row is not None and row.level is not None else ""
        if self.level_range is not None:
            return f"{word} {_num(self.level_range[0])}-{_num(self.level_range[1])}".strip()
        if self.level is not None:
            return f"{word} {_num(self.level)}".strip()
        return str(self.raw.get("pattern", "-"))


def _num(value: float) -> str:
    return f"{value:g}"


def _spec_from_entry(entry: dict[str, Any], origin_default: str, hub_defaults: dict[str, Any]) -> ModelSpec:
    """Build a spec from one JSON entry; the manifest is data, so its errors are reported, not raised raw."""
    try:
        name, task = str(entry["name"]), str(entry["task"])
    except KeyError as missing:
        raise PanetError(f"manifest entry {entry!r} lacks {missing}") from None
    level, level_range = entry.get("level"), None
    if isinstance(level, (list, tuple)):
        level_range, level = (float(level[0]), float(level[1])), None
    source = entry.get("source") or {}
    config = entry.get("config")
    colors = entry.get("colors") or (config or {}).get("n_colors")
    return ModelSpec(
        name=name,
        task=task,
        tasks=tuple(entry.get("tasks") or (task,)),
        arch=entry.get("arch"),
        config=config,
        level=None if level is None else float(level),
        level_range=level_range,
        scale=entry.get("scale") or (config or {}).get("scale"),
        colors=colors,
        default=bool(entry.get("default", False)),
        origin=entry.get("origin", origin_default),
        shipped=source.get("shipped"),
        hub=source.get("hub"),
        manual=source.get("manual"),
        imported=entry.get("imported"),
        sha256=entry.get("sha256"),
        size=entry.get("size"),
        params=entry.get("params"),
        hub_defaults=hub_defaults,
        raw=dict(entry),
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PanetError(f"model manifest {path} is missing (set PANET_MANIFEST or reinstall panet)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PanetError(f"model manifest {path} is unreadable: {error}") from None
    check_manifest(data, path)  # once, here: every command then sees well-typed entries
    return data


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomic write, so a crash never leaves half a manifest."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
        f.write("\n")


def load_manifest(path: Path | None = None) -> dict[str, Any]:
    """The shipped manifest as JSON data."""
    return _read_json(path or paths.manifest_path())


def load_user_manifest() -> dict[str, Any]:
    """The user's manifest of imported models (empty when nothing was imported)."""
    path = paths.user_manifest_path()
    if not path.is_file():
        return {"format": MANIFEST_FORMAT, "models": []}
    return _read_json(path)


def all_specs() -> list[ModelSpec]:
    """Every known model: the manifest's, then the user's imports.

    An import under the name of a manifest model (e.g. the authors' file fetched by hand) completes that entry
    instead of adding a new one.
    """
    manifest = load_manifest()
    defaults = manifest.get("hub") or {}
    specs = [_spec_from_entry(e, "ours", defaults) for e in manifest["models"]]
    by_name = {s.name: i for i, s in enumerate(specs)}
    for entry in load_user_manifest()["models"]:
        if entry.get("name") in by_name:
            i = by_name[entry["name"]]
            merged = dict(specs[i].raw, imported=entry.get("imported"))
            if entry.get("tasks"):
                merged["tasks"] = entry["tasks"]
            specs[i] = _spec_from_entry(merged, specs[i].origin, defaults)
        else:
            specs.append(_spec_from_entry(entry, "imported", defaults))
    return specs


def get_spec(name: str) -> ModelSpec:
    """The spec called ``name``; unknown names raise ModelUnavailable listing close names."""
    specs = all_specs()
    for spec in specs:
        if spec.name == name:
            return spec
    names = [s.name for s in specs]
    close = difflib.get_close_matches(name, names, n=4, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else "`panet models list` shows the known names"
    raise ModelUnavailable(f"unknown model {name!r}: {hint}")
