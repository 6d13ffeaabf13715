"""``--report FILE``: one JSON line per input, so a large job's failures can be listed and retried.

    {"path": "photos/a.png", "output": "clean/a.png", "status": "done", "reason": null}
    {"path": "photos/b.png", "output": "clean/b.png", "status": "failed", "reason": "photos/b.png: truncated ..."}

``status`` is ``done``, ``failed`` or ``skipped`` (output already there, ``--skip-existing``). Lines
come in the order outcomes arrive (input order locally, completion order on Ray). The file is
written atomically when the run ends, like every output of panet.
"""

from __future__ import annotations

import json
from pathlib import Path

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
    """Collects outcomes; :meth:`save` writes them (nothing at all when there is no path)."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = None if path is None else Path(path).expanduser()
        self.lines: list[str] = []

    def add(self, outcome: Outcome) -> None:
        if self.path is not None:
            self.lines.append(json.dumps(report_line(outcome), ensure_ascii=False))

    def save(self) -> None:
        if self.path is None:
            return
        from panet_cli.files import atomic_open

        try:
            with atomic_open(self.path, "w", encoding="utf-8") as f:
                f.write("".join(line + "\n" for line in self.lines))
        except OSError as e:
            raise PanetError(f"{self.path}: cannot write the report ({e.strerror or e})") from None


def read_report(path: str | Path) -> list[dict[str, str | None]]:
    """The lines of a report (for scripts and tests)."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
