"""Validated, atomic FFCV ``.beton`` writing and reading.

Every beton fastmix writes has two fields: ``image`` (``NDArrayField`` of uint8, shape (H, W))
and ``label`` (``IntField``: the source's class, or -1 for a set without classes). Writing is
atomic: the arrays are validated first (the FFCV writer hangs forever when a worker raises), the
file is written under a temporary name in the destination folder by a child process bounded by
a timeout, fsynced, and renamed into place only when complete. A crash or Ctrl-C mid-way leaves
at most a ``.tmp-*`` file that no reader trusts and the next run deletes.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import resource
import threading
import time
from pathlib import Path

import numpy as np

from fastmix.errors import DataError
from fastmix.files import TMP_MARK, temporary_name

WORKER_DIED = 3  # exit status of the writer process when an FFCV worker died


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def validate_arrays(images: np.ndarray, labels: np.ndarray, name: str = "dataset") -> None:
    """Raise DataError unless images is uint8 (N, H, W) and labels is an integer (N,) array."""
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 3:
        raise DataError(
            f"{name}: images must be a uint8 array of shape (N, H, W), got "
            f"{getattr(images, 'dtype', type(images))} {getattr(images, 'shape', '')}"
        )
    if not isinstance(labels, np.ndarray) or labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(f"{name}: labels must be a 1-d integer array, got {labels!r:.80}")
    if len(images) != len(labels):
        raise DataError(f"{name}: {len(images)} images but {len(labels)} labels")
    if len(images) == 0:
        raise DataError(f"{name}: no samples to write")
    if labels.min() < -1 or labels.max() > np.iinfo(np.int32).max:
        raise DataError(
            f"{name}: labels must lie in [-1, 2**31), got [{labels.min()}, {labels.max()}]"
        )


class _ArrayDataset:
    """Indexed dataset over in-memory arrays, the shape FFCV's writer consumes."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return self.images[i], int(self.labels[i])


def _watch_workers(poll_s: float = 0.2) -> None:
    """Exit this (writer) process when one of FFCV's writer workers dies.

    FFCV's ``DatasetWriter`` waits forever for samples a dead worker will never write (a full
    disk, a file-size limit, a bad sample): a daemon thread notices the failed worker, stops the
    others and exits with ``WORKER_DIED``, so ``write_beton`` reports the fault at once instead
    of after its timeout.
    """
    seen: set = set()
    while True:
        # multiprocessing's own registry also holds children that already died (the public
        # active_children() drops those, and a worker can die between two polls)
        seen.update(list(getattr(mp.process, "_children", ())) or mp.active_children())
        failed = [p for p in seen if p.exitcode not in (None, 0)]
        if failed:
            for p in seen:
                if p.exitcode is None:
                    p.kill()
            os._exit(WORKER_DIED)
        time.sleep(poll_s)


def _write_child(tmp: str, images: np.ndarray, labels: np.ndarray, num_workers: int) -> None:
    from ffcv.fields import IntField, NDArrayField
    from ffcv.writer import DatasetWriter

    threading.Thread(target=_watch_workers, daemon=True).start()
    fields = {"image": NDArrayField(np.dtype("uint8"), images.shape[1:]), "label": IntField()}
    writer = DatasetWriter(tmp, fields, num_workers=num_workers)
    writer.from_indexed_dataset(_ArrayDataset(images, labels), chunksize=1000)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())


def clean_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete leftovers of interrupted writes (``*.tmp-*``) in ``folder``; return them."""
    removed = []
    folder = Path(folder)
    if folder.is_dir():
        for p in folder.rglob(f"*{TMP_MARK}*"):
            if p.is_file():
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def write_beton(
    path: str | os.PathLike,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    num_workers: int | None = None,
    timeout_s: float = 900.0,
) -> str:
    """Validate ``images``/``labels`` and write them to ``path`` atomically; return the sha256.

    The file appears at ``path`` only once it is complete. On any failure (bad arrays, a writer
    that dies or exceeds ``timeout_s``, a full disk) nothing is left at ``path`` and a DataError
    names the file.
    """
    path = Path(path)
    validate_arrays(images, labels, name=str(path))
    images = np.ascontiguousarray(images)
    labels = np.ascontiguousarray(labels.astype(np.int64))
    if not path.parent.is_dir():
        raise DataError(f"{path}: output folder {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise DataError(f"{path}: output folder {path.parent} is not writable")
    workers = num_workers or 1
    import ffcv.writer  # noqa: F401  (a slow import: once here, not in every forked child)

    tmp = temporary_name(path)  # the name atomic_write uses; clean_stale_temporaries finds it
    ctx = mp.get_context("fork")
    proc = ctx.Process(target=_write_child, args=(str(tmp), images, labels, workers))
    try:
        proc.start()
        proc.join(timeout_s)
        if proc.is_alive():
            proc.kill()
            proc.join()
            raise DataError(f"{path}: FFCV writer did not finish within {timeout_s:.0f} s")
        if proc.exitcode != 0:
            free = _free_bytes(path.parent)
            full = " (the disk is full)" if 0 <= free < 2**20 else ""
            limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
            if limit != resource.RLIM_INFINITY:
                full += f"; file size limit (ulimit -f) {limit} bytes"
            why = ": a writer worker died" if proc.exitcode == WORKER_DIED else ""
            raise DataError(
                f"{path}: FFCV writer failed (exit code {proc.exitcode}{why}); "
                f"{free / 2**20:.0f} MiB free in {path.parent}{full}"
            )
        digest = sha256_file(tmp)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        return digest
    finally:
        if proc.is_alive():
            proc.kill()
        tmp.unlink(missing_ok=True)


def _free_bytes(folder: Path) -> int:
    try:
        st = os.statvfs(folder)
        return st.f_bavail * st.f_frsize
    except OSError:
        return -1


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_beton(
    path: str | os.PathLike, batch_size: int = 2048, num_workers: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read a beton back through the real FFCV Loader in sequential order: (images, labels)."""
    from ffcv.fields.decoders import IntDecoder, NDArrayDecoder
    from ffcv.loader import Loader, OrderOption

    from fastmix.runtime import usable_cores

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: beton not found")
    workers = num_workers or max(1, min(2, len(usable_cores())))
    loader = Loader(
        str(path),
        batch_size=batch_size,
        num_workers=workers,
        order=OrderOption.SEQUENTIAL,
        drop_last=False,
        pipelines={"image": [NDArrayDecoder()], "label": [IntDecoder()]},
    )
    xs, ys = [], []
    for x, y in loader:
        xs.append(np.array(x, copy=True))  # FFCV reuses its batch buffers
        ys.append(np.array(y, copy=True).reshape(-1))
    return np.concatenate(xs), np.concatenate(ys).astype(np.int64)


def read_beton_arrays(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) of a fastmix beton (module docstring), equal to ``read_beton``'s, read
    without a loader: FFCV's own ``Reader`` parses the header, field descriptors and per-sample
    metadata (an ``NDArrayField``'s metadata is the file offset of the sample's bytes, an
    ``IntField``'s the value), and the image bytes are gathered from a memory map in one
    vectorised copy. No pipeline to compile and no loader thread: what the evaluation and the
    trainer's validation and mixing sets use. DataError for a missing file or other fields."""
    from ffcv.fields import IntField, NDArrayField
    from ffcv.reader import Reader

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: beton not found")
    try:
        reader = Reader(str(path))
    except (AssertionError, ValueError, OSError) as e:
        raise DataError(f"{path}: not a readable beton ({e})") from None
    fields = reader.field_names
    image, label = reader.handlers.get("image"), reader.handlers.get("label")
    if not isinstance(image, NDArrayField) or not isinstance(label, IntField):
        raise DataError(f"{path}: expected fields image (NDArray) and label (int), got {fields}")
    meta = reader.metadata
    names = meta.dtype.names
    ptr = meta[names[fields.index("image")]].astype(np.int64)
    nbytes = int(np.prod(image.shape)) * image.dtype.itemsize
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    if len(ptr) and (ptr.min() < 0 or ptr.max() + nbytes > len(raw)):
        raise DataError(f"{path}: sample offsets beyond the end of the file (truncated?)")
    data = raw[ptr[:, None] + np.arange(nbytes)] if len(ptr) else np.empty((0, nbytes), np.uint8)
    images = data.view(image.dtype).reshape(len(ptr), *image.shape)
    labels = np.asarray(meta[names[fields.index("label")]], dtype=np.int64)
    return images, labels
