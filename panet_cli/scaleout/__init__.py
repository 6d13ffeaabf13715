"""One restoration over many files: on one machine, on a slice of a job array, or on a Ray cluster.

    work.py      the unit of work (read, restore, write one file) and the loop that overlaps them;
                 the local CLI loop and the Ray actors both run it, so outputs are the same
    shards.py    ``--shard I/N``: a deterministic slice of the inputs for scheduler job arrays
    report.py    ``--report FILE``: one JSON line per input (path, output, status, reason)
    ray_job.py   ``--ray [ADDRESS]``: the inputs as a Ray Data dataset, an actor pool doing the work

Nothing here imports Ray at module level: it is an optional extra, imported only by ``--ray``.
Dependencies point one way: images / inference / files <- scaleout <- cli.
"""
