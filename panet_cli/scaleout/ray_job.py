"""``--ray [ADDRESS]``: the same job as a Ray Data pipeline, on a local or an existing Ray cluster.

The planned jobs (inputs, outputs, formats: decided by the CLI exactly as for a local run) become
a dataset of rows; ``map_batches`` hands them to a pool of :class:`RestoreActor`, each loading the
model once and running the local :class:`~panet_cli.scaleout.work.FileWorker` on its rows, so
reading, restoring and atomic writing are the very code of a local run. Actors take one GPU each
when the cluster has GPUs, CPUs otherwise. Inputs and outputs are paths: on several nodes they
must be on a file system every node mounts at the same path (the model travels with the job).

Failures: a file that fails is one outcome with its reason; the rest go on. An actor that dies
(killed, node lost) is restarted by Ray Data and its unfinished rows retried; a retried row whose
output the dead actor had already written is not written again (``written_since``), and writes
are atomic, so an actor's death neither loses nor duplicates outputs.

Ray is imported here only inside functions: ``import panet_cli.scaleout.ray_job`` works without it.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from panet_cli.errors import PanetError, one_line
from panet_cli.scaleout.work import FileJob, FileWorker, Item, Outcome, Settings

if TYPE_CHECKING:
    import numpy as np

INSTALL_HINT = 'Ray is not installed: pip install "panet[ray]" (the Ray Data extra), or run without --ray'
# Prefix of the temporary files of panet_cli.files.atomic_path (an actor killed mid-write leaves one).
TEMP_PREFIX = ".panet-"
# Rows per map_batches call on a GPU actor: enough for the worker to decode and encode one image
# while the GPU restores another. CPU actors take one row at a time (their compute already uses
# every CPU they hold, and single rows balance large images across actors best).
GPU_BATCH = 4


class RayJobStopped(PanetError):
    """The Ray job ended before every row came back (connection lost, actors failing to start ...)."""


def import_ray():
    """The ``ray`` module, or a one-line PanetError saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401 - the Data library is part of the extra
    except ImportError:
        raise PanetError(INSTALL_HINT) from None
    return ray


def is_address(text: str) -> bool:
    """Whether a word after ``--ray`` is a Ray address rather than the next input.

    Addresses are ``auto``, ``local``, ``HOST:PORT`` (the cluster's GCS) or ``ray://HOST:PORT``
    (Ray Client); an input path has no ``:PORT`` ending.
    """
    word = text.strip()
    if word in ("auto", "local") or "://" in word:
        return True
    host, sep, port = word.rpartition(":")
    return bool(sep and host and port.isdigit() and "/" not in host and "\\" not in host)


def connect(address: str | None, *, quiet: bool = True) -> bool:
    """Connect to ``address`` (``auto``, ``HOST:PORT``, ``ray://...``) or start a local cluster (None, ``local``).

    A process already connected (a notebook, a test) keeps its connection. Returns whether this
    call connected, i.e. whether the caller should :func:`disconnect` when done.
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    local = address in (None, "", "local")
    # Ray's own notices (token authentication of a local cluster ...) are not the user's business:
    # errors only; Ray Data's warnings (resources it cannot get ...) still show.
    options: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": not quiet}
    if local:
        options["include_dashboard"] = False
    try:
        ray.init(address=None if local else address, **options)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
        where = "start a local Ray cluster" if local else f"connect to the Ray cluster at {address}"
        raise PanetError(f"cannot {where}: {one_line(e, last=True, limit=300)}") from None
    return True


def disconnect() -> None:
    import ray

    ray.shutdown()




@dataclass(frozen=True)
class Plan:
    """How the job is spread: actors, what each holds, rows per call, and the device it runs on."""

    actors: int
    cpus_per_actor: float
    gpus_per_actor: float
    batch_size: int
    device: str

    def describe(self) -> str:
        kind = "GPU" if self.gpus_per_actor else "CPU"
        each = f"{self.cpus_per_actor:g} CPU" + (f" + {self.gpus_per_actor:g} GPU" if self.gpus_per_actor else "")
        return f"{self.actors} {kind} actor{'s' if self.actors != 1 else ''} ({each} each, device {self.device})"


def plan_actors(resources: dict[str, float], *, device: str = "auto", threads: int = 0, actors: int = 0) -> Plan:
    """One actor per GPU when the cluster has GPUs (unless ``device`` is cpu), else one per ``threads`` CPUs.

    Args:
        resources: ``ray.cluster_resources()``.
        device: ``--device``: auto, cpu, cuda, cuda:N or mps. Each GPU actor sees its own GPU
            as ``cuda`` (Ray sets CUDA_VISIBLE_DEVICES), so cuda:N means "GPU actors" here.
        threads: torch threads (and Ray CPUs) per actor; 0 = 1 for CPU actors (one single-threaded
            actor per CPU restores whole images in parallel, which scales better than threads in
            one image) and up to 4 for GPU actors (their host-side work: blending, codecs).
        actors: the pool size; 0 = as many as the resources allow.
    """
    gpus, cpus = float(resources.get("GPU", 0)), float(resources.get("CPU", 0))
    wanted = (device or "auto").strip().lower()
    if wanted.startswith("cuda") and gpus < 1:
        raise PanetError(f"--device {device}: the Ray cluster has no GPUs (use --device auto or cpu)")
    if wanted not in ("auto", "cpu", "mps") and not wanted.startswith("cuda"):
        raise PanetError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps")
    if gpus >= 1 and wanted != "cpu" and wanted != "mps":
        # A GPU actor still blends tiles into the host canvas, decodes and encodes on its CPUs:
        # give it a few (its share of the cluster's, at most 4) unless --threads says otherwise.
        per_gpu = int(threads) if threads else max(1, min(4, int(cpus // gpus)))
        return Plan(actors or max(1, int(gpus)), float(per_gpu), 1.0, GPU_BATCH, "cuda")
    per_actor = max(1, int(threads or 1))
    count = actors or max(1, int(cpus // per_actor))
    return Plan(count, float(per_actor), 0.0, 1, "mps" if wanted == "mps" else "cpu")


class RestoreActor:
    """A Ray Data actor: loads the model once, then restores the rows of each batch it is given.

    Everything it does per file is :class:`~panet_cli.scaleout.work.FileWorker`'s; it only turns
    rows into jobs and outcomes back into rows. Every ``Exception`` of one file is contained (it
    becomes that file's failure): on a cluster, one odd file must not stop the others.
    """

    worker_class: type[FileWorker] = FileWorker

    def __init__(self, *, model_file: list, model_name: str, settings: Settings, device: str, threads: int,
                 written_since: float | None) -> None:
        import ray
        import torch

        from panet_cli.devices import select_device
        from panet_cli.loading import load_model

        torch.set_num_threads(max(1, threads))
        self.device = select_device(device)
        with tempfile.TemporaryDirectory(prefix="panet-model-") as folder:
            path = Path(folder) / model_name  # the original name: messages name the model as locally
            path.write_bytes(ray.get(model_file[0]))
            descriptor = load_model(path, device=self.device)
        if settings.options.max_memory is None and self.device.type == "cpu":
            # Other actors share this node's RAM: take the share of the CPUs this actor holds.
            from panet_cli.tiling import memory_budget

            share = max(1, threads) / max(1, os.cpu_count() or 1)
            budget = max(256 * 2**20, int(memory_budget(self.device) * min(1.0, share)))
            settings = settings.replace(options=settings.options.replace(max_memory=budget))
        self.notes: list[str] = []
        self.worker = self.worker_class(descriptor, self.device, settings, notice=self._note, contain=(Exception,),
                                        written_since=written_since)

    def _note(self, message: str) -> None:
        if message not in self.notes:
            self.notes.append(message)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import numpy as np

        jobs = [
            Item(source=str(source), display=str(display), output=str(output), format=str(fmt) or None)
            for source, display, output, fmt in zip(batch["source"], batch["display"], batch["output"], batch["format"])
        ]
        outcomes = list(self.worker.process(jobs))
        notes = "\n".join(self.notes)
        return {
            "index": np.asarray(batch["index"], dtype=np.int64),
            "status": np.array([o.status for o in outcomes], dtype=object),
            "reason": np.array([o.reason or "" for o in outcomes], dtype=object),
            "megapixels": np.array([o.megapixels for o in outcomes], dtype=np.float64),
            "written": np.array([o.written for o in outcomes], dtype=bool),
            "notes": np.array([notes] * len(outcomes), dtype=object),
        }


def run(
    jobs: Sequence[FileJob],
    settings: Settings,
    model_path: str | Path,
    plan: Plan,
    *,
    written_since: float | None = None,
    actor_class: type = RestoreActor,
) -> Iterator[Outcome]:
    """Outcomes of ``jobs`` (files with outputs, none failed or skipped yet) from a Ray Data pipeline.

    Needs a connection (:func:`connect`). Outcomes arrive as rows finish, in no fixed order.
    ``written_since`` (default: now) is the job's start, see :class:`~panet_cli.scaleout.work.FileWorker`.
    Raises :class:`RayJobStopped` when the pipeline fails as a whole; outcomes yielded until then stand.
    Leftover temporary files of actors killed mid-write are removed from the output folders at the end.
    """
    ray = import_ray()
    from ray.data import ActorPoolStrategy, DataContext

    if not jobs:
        return
    since = time.time() if written_since is None else written_since
    context = DataContext.get_current()
    context.enable_progress_bars = False  # the CLI draws its own bar over images
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # not "Dataset ... execution finished"
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # not "progress bars disabled"

    rows = [
        {"index": k, "source": str(Path(job.source).absolute()), "display": job.display,
         "output": str(Path(job.output).absolute()), "format": job.format or ""}
        for k, job in enumerate(jobs)
        if job.source is not None and job.output is not None
    ]
    if len(rows) != len(jobs):
        raise PanetError("--ray reads and writes files: stdin and stdout (-) cannot be used with it")
    model = Path(model_path)
    # The weights go into the object store once and each actor fetches them: small constructor
    # arguments stay inline, so Ray can always re-create a dead actor from them. The reference is
    # wrapped in a list so Ray hands it over as is; this generator holds it until the job ends.
    weights = ray.put(model.read_bytes())
    dataset = ray.data.from_items(rows, override_num_blocks=max(1, math.ceil(len(rows) / plan.batch_size)))
    results = dataset.map_batches(
        actor_class,
        fn_constructor_kwargs={
            "model_file": [weights], "model_name": model.name, "settings": settings,
            "device": plan.device, "threads": int(plan.cpus_per_actor), "written_since": since,
        },
        batch_size=plan.batch_size,
        batch_format="numpy",
        compute=ActorPoolStrategy(size=plan.actors),
        num_cpus=plan.cpus_per_actor,
        num_gpus=plan.gpus_per_actor or None,
    )
    seen: set[int] = set()
    rows_back = iter(results.iter_rows())
    try:
        for row in rows_back:
            k = int(row["index"])
            if k in seen:  # Ray Data emits each row once; a second copy must not be counted twice
                continue
            seen.add(k)
            notes = tuple(n for n in str(row["notes"]).split("\n") if n)
            yield Outcome(jobs[k], str(row["status"]), str(row["reason"]) or None, float(row["megapixels"]),
                          bool(row["written"]), notes)
    except Exception as e:  # noqa: BLE001 - the pipeline as a whole failed (Ray's or Ray Data's error types)
        # Per-file errors never get here (actors contain them): this is the job stopping, e.g. actors
        # that cannot start (model, device) or a lost connection. One line; what finished stands.
        raise RayJobStopped(f"the Ray job stopped: {type(e).__name__}: {one_line(e, last=True, limit=300)}") from None
    finally:
        close = getattr(rows_back, "close", None)
        if close is not None:  # stops the pipeline (and its actors) when the caller stops early
            close()
        remove_temporaries({Path(job.output).absolute().parent for job in jobs if job.output is not None}, since)


def remove_temporaries(folders: set[Path], since: float) -> int:
    """Delete atomic-write temporaries created in ``folders`` since ``since``: an actor killed mid-write leaves one.

    Only files made during this job (by its own actors, which are gone once the pipeline has
    ended) are touched; one of another panet process writing into the same folder at the same time
    could be caught too, which is why a folder should have one job writing into it at a time.
    """
    removed = 0
    for folder in folders:
        try:
            candidates = list(folder.glob(TEMP_PREFIX + "*"))
        except OSError:
            continue
        for path in candidates:
            try:
                if path.is_file() and path.stat().st_mtime >= since - 1:
                    path.unlink()
                    removed += 1
            except OSError:
                pass
    return removed
