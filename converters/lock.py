"""One writer per output folder: an exclusive POSIX record lock on ``<folder>/.lock``.

``fcntl.lockf`` (not ``flock``): a record lock belongs to the process that took it and is not
inherited by ``fork()``, so the FFCV writer's forked workers never hold it, and a SIGKILLed
converter releases it at once even while an orphaned worker is still finishing its temporary
file (the next run removes that temporary). The lock file stays in the folder (deleting it on
release would race with the next locker); it holds the pid of the last holder, for the message.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from converters.errors import DataError

LOCK_NAME = ".lock"


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, what: str) -> Iterator[Path]:
    """Hold ``folder``'s lock for the ``with`` block; DataError naming the folder, ``what``
    (e.g. "fastmix convert") and the holder's pid when another process holds it."""
    path = Path(folder) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise DataError(f"{path}: cannot create the lock file ({e.strerror or e})") from None
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EACCES, errno.EAGAIN):
                raise DataError(f"{path}: cannot lock ({e.strerror or e})") from None
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise DataError(
                f"{folder}: another {what} is writing this folder (process {holder}); wait for "
                "it to finish, or use another folder"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)
