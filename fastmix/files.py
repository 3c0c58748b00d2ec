"""Files that a crash never leaves half-written, and one writer per folder.

``atomic_write``: readers (a later run, ``fastmix run``'s skip checks) never see a half-written
file, whatever moment a crash, Ctrl-C or SIGTERM hits: the data goes to ``<name>.tmp-<pid>`` in
the same folder, is fsynced and renamed over ``<name>``; the temporary is removed if anything
fails. A leftover temporary (the process was SIGKILLed mid-write) is never read as the file;
``remove_temporaries`` deletes them once the folder's lock is held.

``folder_lock``: an exclusive POSIX record lock on ``<folder>/.lock``. ``fcntl.lockf`` (not
``flock``): a record lock belongs to the process that took it and is not inherited by
``fork()``, so the FFCV writer's forked workers never hold it, and a SIGKILLed process releases
it at once even while an orphaned worker is still finishing its temporary file. The lock file
stays in the folder (deleting it on release would race with the next locker); it holds the pid
and the command of the last holder, for the message.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from fastmix.errors import DataError

LOCK_NAME = ".lock"
TMP_MARK = ".tmp-"


def temporary_name(path: str | os.PathLike) -> Path:
    """``<path>.tmp-<pid>``: where ``atomic_write`` writes before the rename."""
    path = Path(path)
    return path.with_name(f"{path.name}{TMP_MARK}{os.getpid()}")


def atomic_write(path: str | os.PathLike, data: bytes | str | Callable[[BinaryIO], object]) -> Path:
    """Write ``data`` to ``path`` atomically and return ``path``.

    ``data`` is bytes, text (UTF-8), or a writer ``f -> None`` that writes into the open binary
    temporary file (``torch.save(obj, f)``, ``fig.savefig(f, format="png")``,
    ``np.savez_compressed(f, ...)``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        with open(tmp, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def remove_temporaries(folder: str | os.PathLike, names: Iterable[str]) -> list[Path]:
    """Delete ``<folder>/<name>.tmp-*`` for each of ``names`` (glob patterns allowed): leftovers
    of writes killed before their rename. Call only with the folder's lock held, so none of
    them can be a write in progress. Returns what was removed."""
    folder = Path(folder)
    gone = []
    if folder.is_dir():
        for name in names:
            for p in folder.glob(f"{name}{TMP_MARK}*"):
                p.unlink(missing_ok=True)
                gone.append(p)
    return gone


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
            pid, _, holder_what = holder.partition(" ")
            raise DataError(
                f"{folder}: another {holder_what or what} is writing this folder (process "
                f"{pid}); wait for it to finish, or use another folder"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {what}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)
