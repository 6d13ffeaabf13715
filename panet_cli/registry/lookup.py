"""Where a model's bytes are (shipped, imported, hub cache, download) and which model a task uses.

Decided in one place, :func:`local_path` and :func:`resolve`; status never touches the network.
"""

from __future__ import annotations

import os
from pathlib import Path

from panet_cli import hub, paths
from panet_cli.errors import CheckpointError, IncompatibleModel, ModelUnavailable
from panet_cli.registry.specs import ModelSpec, all_specs, get_spec
from panet_cli.registry.validate import inside
from panet_cli.tasks import task_spec

STATUSES = ("shipped", "imported", "cached", "downloadable", "manual", "missing")


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
    if not spec.shipped:
        return None
    return inside(paths.shipped_weights_dir(), spec.shipped, f"the shipped file of {spec.name}")


def _imported_path(spec: ModelSpec) -> Path | None:
    """The imported file, never outside the model folder (a manifest could say ``../``): removing it deletes it."""
    if not spec.imported:
        return None
    return inside(paths.user_models_dir(), spec.imported["file"], f"the imported file of {spec.name}")


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


def candidates(task: str, *, level: float | None = None, scale: int | None = None,
               colors: int | None = None) -> list[ModelSpec]:
    """Models that can serve ``task``, best first.

    Level-specific models whose level equals ``level``, then the task's default (blind) models; for sr and
    demosaic, the defaults then the others (for sr, of ``scale``: 4 when not given). When ``colors`` is given,
    models with that many channels come first.
    """
    row = task_spec(task)
    # the row's default model first among the manifest's defaults
    serving = sorted((s for s in all_specs() if row.name in s.tasks), key=lambda s: s.name != row.default_model)
    if row.level is None:  # no level: every model of the task (and scale) fits, defaults first
        if row.scaled:
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
        if task_spec(task).scaled and scale is not None and spec.scale not in (None, scale):
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
    what = f"x{scale or 4} {task}" if task_spec(task).scaled else task
    if not options:
        raise ModelUnavailable(f"no {what} model is known; import one with "
                               f"`panet models import PATH --name NAME --task {task}`")
    preferred = next((s for s in options if s.default), options[0])
    others = [s.name for s in options if s is not preferred]
    also = f" (also usable: {', '.join(others)}; see `panet models info NAME`)" if others else ""
    file = hub_file(preferred)
    wanted = f" (wanted {preferred.name}: {file.describe()})" if file is not None and not download else ""
    raise ModelUnavailable(f"no {what} model is installed{wanted}: {advice(preferred)}{also}")
