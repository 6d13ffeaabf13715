"""Known models as data: which exist, where their bytes are, and which one a task uses by default.

The specs live in ``weights/manifest.json`` (see :func:`panet_cli.paths.manifest_path`); models a user imported
live in a second manifest in their model folder. Where a model's file comes from is decided in one place,
:func:`local_path` and :func:`resolve`: shipped file, imported file, hub cache, download, in that order.
Listing and status never touch the network.

Maintainers: ``python -m panet_cli.registry --refresh-shipped`` rewrites sha256, size, parameters, config and
validation scores of the shipped files into the manifest, so adding a trained model is one command.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from panet_cli import hub, paths
from panet_cli.files import atomic_open
from panet_cli.errors import CheckpointError, IncompatibleModel, ModelUnavailable, PanetError

TASKS = ("denoise", "sr", "car", "demosaic")
STATUSES = ("shipped", "imported", "cached", "downloadable", "manual", "missing")
MANIFEST_FORMAT = 1
# Tensors that are not learned weights: fixed mean shifts, a constant buffer, PA-EDSR's second name for its attention.
_NOT_PARAMETERS = re.compile(r"^(sub_mean|add_mean|msa)\.|escape_NaN$")


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
        if self.task == "sr":
            return f"x{self.scale}" if self.scale else "-"
        word = {"denoise": "sigma", "car": "q"}.get(self.task, "")
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
    except (OSError, json.JSONDecodeError) as error:
        raise PanetError(f"model manifest {path} is unreadable: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise PanetError(f"model manifest {path} has no 'models' list")
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


# ---------------------------------------------------------------- where the bytes are


def hub_file(spec: ModelSpec, *, repo: str | None = None, revision: str | None = None) -> hub.HubFile | None:
    """The hub file for ``spec``, or None when it has no pinned, checksummed hub copy.

    Our models use the manifest's default repo unless ``repo`` / ``PANET_HUB_REPO`` name another (a mirror:
    its revision is then ``revision`` / ``PANET_HUB_REVISION``, else ``main``); bytes are always checked
    against the manifest's sha256.
    """
    if not spec.hub or not spec.sha256:
        return None
    mirror = False
    if spec.hub.get("repo"):  # a model pinned to a repo of its own
        chosen_repo, pinned = spec.hub["repo"], spec.hub.get("revision")
    else:
        defaults = spec.hub_defaults
        wanted = repo or os.environ.get("PANET_HUB_REPO")
        if wanted and wanted != defaults.get("repo"):
            chosen_repo, pinned, mirror = wanted, None, True
        else:
            chosen_repo, pinned = defaults.get("repo"), spec.hub.get("revision") or defaults.get("revision")
    chosen_revision = revision or os.environ.get("PANET_HUB_REVISION") or pinned or ("main" if mirror else None)
    if not chosen_repo or not chosen_revision:
        return None
    return hub.HubFile(chosen_repo, spec.hub.get("filename") or f"{spec.name}.safetensors", chosen_revision,
                       spec.sha256, spec.size)


def _shipped_path(spec: ModelSpec) -> Path | None:
    return paths.shipped_weights_dir() / spec.shipped if spec.shipped else None


def _imported_path(spec: ModelSpec) -> Path | None:
    return paths.user_models_dir() / spec.imported["file"] if spec.imported else None


def status(spec: ModelSpec) -> str:
    """shipped / imported / cached / downloadable / manual / missing; cheap, no hashing, no network."""
    shipped, imported = _shipped_path(spec), _imported_path(spec)
    if shipped is not None and shipped.is_file():
        return "shipped"
    if imported is not None and imported.is_file():
        return "imported"
    file = hub_file(spec)
    if file is not None:
        return "cached" if hub.cached_path(file) is not None else "downloadable"
    return "manual" if spec.manual else "missing"


def local_path(spec: ModelSpec, *, verify: bool = True) -> Path | None:
    """The model's file on this machine (shipped, imported, hub cache), sha256-checked, or None."""
    shipped = _shipped_path(spec)
    if shipped is not None and shipped.is_file():
        if verify and spec.sha256 and hub.sha256_of(shipped) != spec.sha256:
            raise CheckpointError(
                f"{shipped} does not match the sha256 in {paths.manifest_path()}: if it was retrained, run "
                "`python -m panet_cli.registry --refresh-shipped`"
            )
        return shipped
    imported = _imported_path(spec)
    if imported is not None and imported.is_file():
        expected = spec.imported.get("sha256")
        if verify and expected and hub.sha256_of(imported) != expected:
            raise CheckpointError(f"{imported} changed since it was imported: import it again with --force")
        return imported
    file = hub_file(spec)
    if file is not None:
        cached = hub.cached_path(file)
        if cached is not None:
            if verify:
                hub.verify(cached, file)
            return cached
    return None


def advice(spec: ModelSpec) -> str:
    """How to get ``spec`` by hand, for messages."""
    if spec.manual:
        manual = spec.manual
        file = manual.get("file") or "the checkpoint"
        return (f"get {file} from {manual.get('where', 'the authors')} and run "
                f"`panet models import {file if manual.get('file') else 'PATH'} --name {spec.name}`")
    file = hub_file(spec)
    if file is not None:
        return f"to install it by hand, fetch {file.describe()} and run `panet models import PATH --name {spec.name}`"
    return (f"{spec.name} is not trained or published in this version of panet; import a model with "
            f"`panet models import PATH --name NAME --task {spec.task}`")


def resolve(spec: ModelSpec, *, download: bool = True, progress: hub.ProgressCallback | None = None,
            repo: str | None = None, revision: str | None = None) -> Path:
    """Local file of ``spec``: shipped, imported, cached, else downloaded when allowed. Raises ModelUnavailable."""
    found = local_path(spec)
    if found is not None and repo is None and revision is None:
        return found
    file = hub_file(spec, repo=repo, revision=revision)
    if file is None:
        if found is not None:
            return found
        raise ModelUnavailable(f"model {spec.name} is not installed: {advice(spec)}")
    if not download:
        cached = hub.cached_path(file)
        if cached is not None:
            hub.verify(cached, file)
            return cached
        raise ModelUnavailable(f"model {spec.name} is not installed (wanted {file.describe()}): {advice(spec)}")
    by_hand = f"to install it by hand, fetch that file and run `panet models import PATH --name {spec.name}`"
    return hub.download(file, progress=progress, advice=by_hand)


# ---------------------------------------------------------------- choosing a model for a task


def candidates(task: str, *, level: float | None = None, scale: int | None = None,
               colors: int | None = None) -> list[ModelSpec]:
    """Models that can serve ``task``, best first.

    Level-specific models whose level equals ``level``, then the task's default (blind) models; for sr and
    demosaic, the defaults then the others (for sr, of ``scale``: 4 when not given). When ``colors`` is given,
    models with that many channels come first.
    """
    if task not in TASKS:
        raise PanetError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    serving = [s for s in all_specs() if task in s.tasks]
    if task in ("sr", "demosaic"):  # no level: every model of the task (and scale) fits, defaults first
        if task == "sr":
            serving = [s for s in serving if s.scale == (scale or 4)]
        ordered = [s for s in serving if s.default] + [s for s in serving if not s.default]
    else:
        exact = [s for s in serving if level is not None and s.level is not None and abs(s.level - level) < 1e-6]
        defaults = [s for s in serving if s.default]
        ordered = exact + [s for s in defaults if s not in exact]
    if colors is not None:
        ordered = [s for s in ordered if s.colors == colors] + [s for s in ordered if s.colors != colors]
    return ordered


def find_model(task: str, *, name: str | None = None, level: float | None = None, scale: int | None = None,
               colors: int | None = None, download: bool = True,
               progress: hub.ProgressCallback | None = None) -> Path:
    """Local file of the model to use for ``task``.

    ``name`` picks a model explicitly (a path to an existing file is accepted too). Otherwise: an installed model
    made for exactly ``level`` (sigma / JPEG quality), else the task's default (blind) model; for sr the model of
    ``scale``; ``colors`` (1 or 3) prefers models with that many channels. Installed files win over downloads;
    downloads happen only when ``download`` is true and go through the hub cache.
    Raises ModelUnavailable (unknown, not installed and not downloadable now: the message says what to do) or
    IncompatibleModel (a named model for another task).
    """
    if name is not None:
        try:
            spec = get_spec(name)
        except ModelUnavailable:
            if Path(name).expanduser().is_file():
                return Path(name).expanduser()
            raise
        if task not in spec.tasks:
            raise IncompatibleModel(f"model {spec.name} is for {'/'.join(spec.tasks)}, not {task}")
        if task == "sr" and scale is not None and spec.scale not in (None, scale):
            raise IncompatibleModel(f"model {spec.name} upscales x{spec.scale}, not x{scale}")
        return resolve(spec, download=download, progress=progress)
    options = candidates(task, level=level, scale=scale, colors=colors)
    for spec in options:
        found = local_path(spec)
        if found is not None:
            return found
    for spec in options:
        if download and hub_file(spec) is not None:
            return resolve(spec, download=True, progress=progress)
    what = f"x{scale or 4} sr" if task == "sr" else task
    if not options:
        raise ModelUnavailable(f"no {what} model is known; import one with "
                               f"`panet models import PATH --name NAME --task {task}`")
    preferred = next((s for s in options if s.default), options[0])
    others = [s.name for s in options if s is not preferred]
    also = f" (also usable: {', '.join(others)}; see `panet models info NAME`)" if others else ""
    file = hub_file(preferred)
    wanted = f" (wanted {preferred.name}: {file.describe()})" if file is not None and not download else ""
    raise ModelUnavailable(f"no {what} model is installed{wanted}: {advice(preferred)}{also}")


# ---------------------------------------------------------------- import and remove


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
    from panet_cli.loading.convert import convert_checkpoint

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
    if descriptor.arch == "PAEDSR" or task == "sr":
        entry["scale"] = descriptor.scale
    if level is not None:
        entry["level"] = level
    user = load_user_manifest()
    user["models"] = [e for e in user["models"] if e.get("name") != name] + [entry]
    _write_json(paths.user_manifest_path(), user)
    return get_spec(name)


def remove_model(name: str) -> str:
    """Delete an imported model or a downloaded copy; shipped and manual-only models are refused."""
    spec = get_spec(name)
    removed = []
    imported = _imported_path(spec)
    if imported is not None:
        imported.unlink(missing_ok=True)
        user = load_user_manifest()
        user["models"] = [e for e in user["models"] if e.get("name") != name]
        _write_json(paths.user_manifest_path(), user)
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


# ---------------------------------------------------------------- file facts without torch


def read_safetensors_header(path: str | Path) -> tuple[dict[str, list[int]], dict[str, Any]]:
    """Tensor shapes and decoded metadata from a safetensors header, without loading tensors or torch.

    Listing and refreshing models must stay fast and torch-free; the header is a length-prefixed JSON.
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > 100 * 2**20:
                raise ValueError("header too large")
            header = json.loads(f.read(length))
    except (OSError, ValueError, struct.error) as error:
        raise CheckpointError(f"{path} is not a readable safetensors file ({error})") from None
    raw_meta = header.pop("__metadata__", None) or {}
    meta: dict[str, Any] = {}
    for key, value in raw_meta.items():
        try:
            meta[key] = json.loads(value)
        except (TypeError, json.JSONDecodeError):
            meta[key] = value
    return {k: list(v.get("shape", [])) for k, v in header.items()}, meta


def count_parameters(shapes: dict[str, Iterable[int]]) -> int:
    """Learned weights, counting PA-EDSR's twice-stored attention once and leaving out fixed mean shifts."""
    total = 0
    for key, shape in shapes.items():
        if _NOT_PARAMETERS.search(key):
            continue
        count = 1
        for dim in shape:
            count *= int(dim)
        total += count
    return total


# ---------------------------------------------------------------- maintainer: refresh shipped entries


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
        if entry["task"] == "denoise" and "sigma_min" in recipe:
            entry["level"] = [recipe["sigma_min"], recipe["sigma_max"]]
        elif entry["task"] == "car" and "quality_min" in recipe:
            entry["level"] = [recipe["quality_min"], recipe["quality_max"]]
        elif entry["task"] == "sr" and meta.get("scale"):
            entry["scale"] = meta["scale"]
        elif entry["task"] == "demosaic" and recipe.get("pattern"):
            entry["pattern"] = recipe["pattern"]
        entry["training"] = {k: meta[k] for k in _TRAINING_KEYS if k in meta}
        if "val_psnr" in meta:
            at = {"denoise": f"sigma {recipe.get('val_sigma')}", "car": f"q {recipe.get('val_quality')}",
                  "sr": f"x{meta.get('scale')}"}.get(entry["task"], entry["task"])
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


def _main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m panet_cli.registry", description=__doc__.split("\n\n")[0])
    parser.add_argument("--refresh-shipped", action="store_true",
                        help="rewrite sha256/size/params/config/scores of shipped files into the manifest")
    parser.add_argument("--hub-revision", help="pin this revision (commit) of the hub repo in the manifest")
    parser.add_argument("--manifest", type=Path, help="manifest to edit (default: the one panet uses)")
    args = parser.parse_args(argv)
    if not (args.refresh_shipped or args.hub_revision):
        parser.error("nothing to do: pass --refresh-shipped and/or --hub-revision")
    if args.refresh_shipped:
        for line in refresh_shipped(args.manifest) or ["no shipped entry changed"]:
            print(line)
    if args.hub_revision:
        set_hub_revision(args.hub_revision, args.manifest)
        print(f"hub revision pinned to {args.hub_revision}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
