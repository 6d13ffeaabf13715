"""``--shard I/N``: a deterministic slice of a job's inputs, for scheduler job arrays without Ray.

Each member of an array (SLURM ``--array=0-N-1``, PBS/LSF/SGE alike) runs the same command with
its own ``I``; together they process every input exactly once. The slice is taken by position in
the expanded input list, round robin (input k goes to shard k mod N): every member expands the same
inputs in the same (sorted) order, so no coordination is needed, and shards differ in size by at
most one image. Outputs a member writes next to its inputs do not shift the others' slices: the CLI
drops planned outputs from the inputs before slicing. Whether an output exists (``--skip-existing``)
does not change the slices either, so a resubmitted array member redoes only its own missing images.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' -> (I, N) with 0 <= I < N; ValueError with a one-line message otherwise."""
    index, sep, count = str(text).strip().partition("/")
    if not sep or not _digits(index) or not _digits(count):
        raise ValueError(f"--shard {text}: write I/N, e.g. 0/4 for the first of four shards")
    i, n = int(index), int(count)
    if n < 1 or i >= n:
        raise ValueError(f"--shard {text}: I must be 0 to N-1 and N at least 1 (e.g. 0/4 ... 3/4)")
    return i, n


def _digits(text: str) -> bool:
    """Plain 0-9 digits (``str.isdigit`` alone accepts '²', which ``int`` then refuses)."""
    text = text.strip()
    return text.isascii() and text.isdigit()


def take_shard(items: Sequence[T], index: int, count: int) -> list[T]:
    """Items at positions ``index``, ``index + count``, ``index + 2*count`` ..."""
    if not 0 <= index < count:
        raise ValueError(f"shard {index}/{count} does not exist")
    return list(items[index::count])
