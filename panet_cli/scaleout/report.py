"""``--report FILE``: one JSON line per input, so a large job's failures can be listed and retried.

    {"path": "photos/a.png", "output": "clean/a.png", "status": "done", "reason": null}
    {"path": "photos/b.png", "output": "clean/b.png", "status": "failed", "reason": "photos/b.png: truncated ..."}

``status`` is ``done``, ``failed`` or ``skipped`` (output already there, ``--skip-existing``). Lines
come in the order outcomes arrive (input order locally, completion order on Ray). Each line is written
and flushed as its outcome arrives, so a run that is interrupted or killed still leaves the report of
what it did; a line is never half there unless the process died within that one write.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TextIO

from panet_cli.errors import PanetError
from panet_cli.scaleout.work import Outcome


def report_line(outcome: Outcome) -> dict[str, str | None]:
    job = outcome.job
    return {
        "path": job.display,
        "output": None if job.output is None else str(job.output),
        "status": outcome.status,
        "reason": outcome.reason,
    }


class Report:
    """Writes outcomes to ``path`` as they come (nothing at all when there is no path).

    The file is created when the report is made: an existing one is replaced only with ``overwrite``
    (the CLI refuses that case earlier, with a usage error; the exclusive create also covers a file
    that appears meanwhile).
    """

    def __init__(self, path: str | Path | None, *, overwrite: bool = False) -> None:
        self.path = None if path is None else Path(path).expanduser()
        self.file: TextIO | None = None
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            replaceable = overwrite or (self.path.exists() and not self.path.is_file())  # /dev/stdout, a FIFO
            self.file = open(self.path, "w" if replaceable else "x", encoding="utf-8")
        except FileExistsError:
            raise PanetError(f"{self.path}: the report already exists (use --overwrite to replace it)") from None
        except OSError as e:
            raise PanetError(f"{self.path}: cannot write the report ({e.strerror or e})") from None

    def add(self, outcome: Outcome) -> None:
        if self.file is None:
            return
        try:
            self.file.write(json.dumps(report_line(outcome), ensure_ascii=False) + "\n")
            self.file.flush()
        except OSError as e:
            raise PanetError(f"{self.path}: cannot write the report ({e.strerror or e})") from None

    def close(self) -> None:
        if self.file is not None:
            file, self.file = self.file, None
            try:
                file.close()
            except OSError as e:
                raise PanetError(f"{self.path}: cannot write the report ({e.strerror or e})") from None
