"""Atomic file output (write beside the target, then publish: no reader sees half a file) and file hashes.

Temporaries are hidden (``.panet-XXXXXXXX.suffix``) and locked (``flock``) while their writer lives: a
process killed before it could remove its own (SIGKILL, power loss) leaves one that the next run into
that folder recognises as stale by name and lock, and removes (:func:`remove_stale_temporaries`).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

try:
    import fcntl
except ImportError:  # Windows: no flock; stale temporaries are recognised by age alone
    fcntl = None  # type: ignore[assignment]

TEMP_PREFIX = ".panet-"
# mkstemp's names: the prefix, 8 characters of [a-z0-9_], the target's suffix (or .tmp).
_TEMP_NAME = re.compile(r"\.panet-[a-z0-9_]{8}(\.[A-Za-z0-9]{1,8})?")
# A temporary is only ever stale when untouched for this long: its writer locks it the moment it is
# made, so the grace only covers that instant; without flock (Windows) a day stands for "dead".
_STALE_AFTER_S = 5.0 if fcntl is not None else 86400.0
# link() is not supported everywhere (FAT, some network file systems): those publish with a check.
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK, errno.ENOSYS}


def default_mode() -> int:
    """Permissions a newly created file gets under the current umask (mkstemp's 0600 would hide it)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def atomic_path(path: str | Path, *, replace: bool = True) -> Iterator[Path]:
    """A temporary path beside ``path``; when the block succeeds it becomes ``path``, else it is removed.

    ``replace=False`` never replaces a file, even one that appeared while the block ran: the temporary is
    published with ``link`` (which fails on an existing name) and then unlinked; FileExistsError then.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX, suffix=path.suffix or ".tmp")
    tmp = Path(name)
    try:
        _lock(fd)  # held until the end: a live writer's file is never taken for stale
        yield tmp
        os.chmod(tmp, default_mode())
        if replace:
            os.replace(tmp, path)
        else:
            _publish_new(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)


def _lock(fd: int) -> None:
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            pass  # a file system without locks: the age check alone then protects the file


def _publish_new(tmp: Path, path: Path) -> None:
    """Give ``tmp`` the name ``path`` only if no file has it (FileExistsError otherwise)."""
    try:
        os.link(tmp, path)
    except OSError as e:
        if e.errno not in _NO_LINKS:
            raise
        if os.path.lexists(path):  # no hard links here: the check and the rename are apart again
            raise FileExistsError(errno.EEXIST, "File exists", str(path)) from None
        os.replace(tmp, path)
    else:
        tmp.unlink()


@contextmanager
def atomic_open(path: str | Path, mode: str = "wb", *, replace: bool = True, **kwargs) -> Iterator[IO]:
    """``open(path, mode)`` that publishes ``path`` only once the block has written everything."""
    with atomic_path(path, replace=replace) as tmp, open(tmp, mode, **kwargs) as f:
        yield f


def remove_stale_temporaries(folder: str | Path) -> int:
    """Delete temporaries of ours in ``folder`` whose writer is gone (killed mid-write); returns how many.

    Only names :func:`atomic_path` makes are candidates, and only unlocked ones untouched for a few
    seconds: another panet process writing into the same folder keeps its own.
    """
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        if not _TEMP_NAME.fullmatch(entry.name):
            continue
        try:
            if not entry.is_file(follow_symlinks=False) or time.time() - entry.stat().st_mtime < _STALE_AFTER_S:
                continue
            if _unlink_if_unlocked(entry.path):
                removed += 1
        except OSError:
            continue  # gone meanwhile, or not ours to remove
    return removed


def _unlink_if_unlocked(path: str) -> bool:
    if fcntl is None:
        os.unlink(path)
        return True
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # its writer holds it
        os.unlink(path)
        return True
    finally:
        os.close(fd)


_HASHES: dict[tuple[str, int, int], str] = {}


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file, remembered per (path, size, mtime) for the life of the process."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]
