"""FFCV loaders for training, evaluation and Outlier Exposure.

Every loader yields ``(images, labels)``, labels int64 (B,). Images are float32 in [0, 1], the
model-input convention of the whole project (``fastmix.data.inputs``): (B, 1, H, W) from a
loader of one augmentation, (V, B, 1, H, W) from a training loader given a list of V
augmentations (its views, from one read and one decode per batch; ``fastmix.augment.ffcv_ops``).

Epochs. ``EpochLoader`` wraps an FFCV ``Loader``: each ``iter()`` is one epoch. Its number is
FFCV's ``next_epoch`` counter (0 first); it seeds the RANDOM order (``default_rng(s + epoch)``
with ``s = derive_seed(seed, "data_order")``, or ``"outlier_order"``: seeds 0 and 1 share no
epoch order, as they would with ``s = seed``) and reaches
the augmentation op through ``set_epoch`` before FFCV starts the epoch. ``set_epoch(e)`` resumes
at epoch ``e``. Starting an epoch first stops an unfinished iterator of the previous one.

Buffers. FFCV reuses its output buffers (``batches_ahead + 2`` slots): a batch stays valid only
until a few more batches have been drawn. The fastmix training loop consumes each batch before
asking for the next; ``.clone()`` a batch you keep longer.

Threads. ``num_workers`` is the number of Numba threads that decode and augment each batch (at
most the CPU count; default min(2, CPUs)). FFCV also sets torch's intra-op thread count to
``num_workers`` -- to 1 when ffcv is imported, again at every Loader construction and at the start
of every epoch (``Compiler.set_num_threads``). The loaders here put it back to ``torch_threads``
(default: all usable CPUs; 0 leaves it alone) after construction and after each epoch's first
batch, when FFCV's worker thread has made its change (``fastmix.runtime.set_torch_threads``).
"""

from __future__ import annotations

import os
import queue
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from ffcv.fields import IntField, NDArrayField
from ffcv.fields.decoders import IntDecoder, NDArrayDecoder
from ffcv.loader import Loader, OrderOption
from ffcv.reader import Reader
from ffcv.transforms import ToDevice, ToTensor

from fastmix.augment.ffcv_ops import ParallelNDArrayDecoder, Views
from fastmix.augment.spec import Augmentation
from fastmix.errors import ConfigError, DataError
from fastmix.rng import derive_seed
from fastmix.runtime import set_torch_threads, usable_cores

Batch = tuple[torch.Tensor, torch.Tensor]


class EpochLoader:
    """One FFCV epoch per ``iter()``: batches ``(images, labels int64 (B,))``, images float32
    (B, 1, H, W), or (V, B, 1, H, W) views for a loader of several augmentations."""

    def __init__(
        self, loader: Loader, views: Views, torch_threads: int | None, stacked: bool = False
    ) -> None:
        self.loader = loader
        self.views = views
        self.stacked = stacked  # yield (V, B, 1, H, W) views instead of (B, 1, H, W) images
        self.torch_threads = torch_threads
        self._active = None  # the FFCV EpochIterator of the current epoch
        self._restore_threads()

    @property
    def batch_size(self) -> int:
        return self.loader.batch_size

    @property
    def epoch(self) -> int:
        """The epoch the next ``iter()`` runs (0-based)."""
        return int(self.loader.next_epoch)

    def set_epoch(self, epoch: int) -> None:
        """Make the next ``iter()`` run epoch ``epoch`` (order and augmentation), e.g. to resume."""
        if int(epoch) < 0:
            raise ConfigError(f"epoch must be >= 0, got {epoch}")
        self.loader.next_epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def _restore_threads(self) -> None:
        if self.torch_threads != 0:
            set_torch_threads(self.torch_threads)

    def close(self) -> None:
        """Stop the unfinished epoch's FFCV worker thread, if any (idempotent; the loader stays
        usable); every ``iter()`` does it first. Otherwise that thread stays alive, blocked on
        its full queue, holding its batch buffers, and Numba's TBB pool cannot shut down before
        a later ``fork()``.

        FFCV's worker thread notices its ``close()`` only when its output queue is full, and at
        the end of an epoch it blocks on a full queue forever; taking one queued batch at a time
        lets it reach either point, so it exits after at most a few more batches.
        """
        it, self._active = self._active, None
        if it is None:
            return
        it.close()
        while it.is_alive():
            it.join(timeout=0.6)
            if it.is_alive():
                try:
                    it.output_queue.get_nowait()
                except queue.Empty:
                    pass

    def __iter__(self) -> Iterator[Batch]:
        self.close()
        self.views.set_epoch(self.epoch)
        self._active = iter(self.loader)  # FFCV starts computing batches right away
        return self._batches(self._active)

    def _batches(self, it) -> Iterator[Batch]:
        first = True
        for images, labels in it:
            if first:
                self._restore_threads()  # FFCV's worker thread reset it before this batch
                first = False
            n, v, h, w = images.shape  # view-major memory (fastmix.augment.ffcv_ops)
            x = images.view(v, n, 1, h, w)
            yield (x if self.stacked else x[0]), labels.view(-1)


def cycle(loader: EpochLoader) -> Iterator[Batch]:
    """Endless batches from ``loader``, one epoch after another (each with its own order and
    augmentation). For Outlier Exposure: ``zip(train_loader, cycle(outlier_loader))`` lets the
    in-distribution loader set the epoch length while the outlier stream carries on where it was."""
    if len(loader) == 0:
        raise ConfigError(
            f"outlier loader has no full batch of {loader.batch_size} (fewer samples than a batch)"
        )
    while True:
        yield from loader


def _check_beton(beton: str | os.PathLike) -> Path:
    path = Path(beton)
    if not path.is_file():
        raise DataError(f"{path}: beton not found")
    return path


def _check_workers(num_workers: int | None) -> int:
    cpus = len(usable_cores())
    if num_workers is None:
        return max(1, min(2, cpus))
    if (
        isinstance(num_workers, bool)
        or not isinstance(num_workers, int)
        or not 1 <= num_workers <= cpus
    ):
        raise ConfigError(
            f"num_workers must be an integer in [1, {cpus}] (the CPU count), got {num_workers!r}"
        )
    return num_workers


def _check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    return batch_size


def _check_fields(path: Path) -> None:
    """DataError unless the beton reads and has fields image (uint8 (H, W)) and label (int)."""
    try:
        handlers = Reader(str(path)).handlers
    except Exception as e:  # a truncated or foreign file fails in many ways inside ffcv
        raise DataError(f"{path}: not a readable FFCV beton ({type(e).__name__}: {e})") from e
    image, label = handlers.get("image"), handlers.get("label")
    if not isinstance(image, NDArrayField) or not isinstance(label, IntField):
        found = {k: type(v).__name__ for k, v in handlers.items()}
        raise DataError(
            f"{path}: expected fields image (NDArrayField) and label (IntField), got {found}"
        )
    if np.dtype(image.dtype) != np.uint8 or len(image.shape) != 2:
        raise DataError(
            f"{path}: image field must be uint8 (H, W), got {image.dtype} {image.shape}"
        )


def _build(
    beton: str | os.PathLike,
    views: Views,
    batch_size: int,
    num_workers: int | None,
    order: OrderOption,
    seed: int,
    drop_last: bool,
    distributed: bool,
    device: str | torch.device,
    batches_ahead: int,
    torch_threads: int | None,
    stacked: bool,
) -> EpochLoader:
    path = _check_beton(beton)
    workers = _check_workers(num_workers)
    batch_size = _check_batch_size(batch_size)
    dev = torch.device(device)
    tail = [] if dev.type == "cpu" else [ToDevice(dev, non_blocking=True)]
    # Augmenting loaders decode on all their threads (``ParallelNDArrayDecoder``); the others
    # keep ffcv's serial decoder, which compiles faster and is never their bottleneck.
    decoder = ParallelNDArrayDecoder() if views.augments else NDArrayDecoder()
    pipelines = {
        "image": [decoder, views, ToTensor(), *tail],
        "label": [IntDecoder(), ToTensor(), *tail],
    }
    _check_fields(path)
    loader = Loader(
        str(path),
        batch_size=batch_size,
        num_workers=workers,
        order=order,
        seed=seed,
        drop_last=drop_last,
        distributed=distributed,
        pipelines=pipelines,
        batches_ahead=batches_ahead,
    )
    return EpochLoader(loader, views, torch_threads, stacked)


def _as_views(augment: Augmentation | Sequence[Augmentation]) -> tuple[list[Augmentation], bool]:
    if isinstance(augment, Augmentation):
        return [augment], False
    augs = list(augment)
    if not augs or not all(isinstance(a, Augmentation) for a in augs):
        raise ConfigError(
            f"augment must be an Augmentation or a non-empty list of them, got {augment!r}"
        )
    return augs, True


def make_train_loader(
    beton: str | os.PathLike,
    augment: Augmentation | Sequence[Augmentation],
    batch_size: int,
    seed: int,
    fractal_bank: np.ndarray | None = None,
    num_workers: int | None = None,
    drop_last: bool = True,
    distributed: bool = False,
    *,
    device: str | torch.device = "cpu",
    batches_ahead: int = 3,
    torch_threads: int | None = None,
    order_purpose: str = "data_order",
) -> EpochLoader:
    """Training loader: random order (FFCV RANDOM, ``derive_seed(seed, "data_order") + epoch``);
    ``augment`` one
    ``Augmentation`` (images (B, 1, H, W)) or a list of them (views (V, B, 1, H, W)), each
    seeded per sample by ``(view_seed(seed, augmentation), epoch, index)``. ``fractal_bank``:
    the PixMix mixing pictures (uint8 (M, S, S)), needed by a PixMix view; ``order_purpose``:
    the ``derive_seed`` purpose of the order. See the module doc for epochs, buffers and
    threads."""
    augs, stacked = _as_views(augment)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ConfigError(f"seed must be an integer, got {seed!r}")
    views = Views(augs, int(seed), fractal_bank)
    return _build(
        beton,
        views,
        batch_size,
        num_workers,
        OrderOption.RANDOM,
        derive_seed(int(seed), order_purpose),
        drop_last,
        distributed,
        device,
        batches_ahead,
        torch_threads,
        stacked,
    )


def make_eval_loader(
    beton: str | os.PathLike,
    batch_size: int,
    num_workers: int | None = None,
    *,
    device: str | torch.device = "cpu",
    torch_threads: int | None = None,
) -> EpochLoader:
    """Evaluation loader: sequential order, no augmentation, last partial batch kept."""
    return _build(
        beton,
        Views([Augmentation()]),
        batch_size,
        num_workers,
        OrderOption.SEQUENTIAL,
        0,
        False,
        False,
        device,
        3,
        torch_threads,
        False,
    )


def make_outlier_loader(
    beton: str | os.PathLike,
    batch_size: int,
    seed: int,
    num_workers: int | None = None,
    distributed: bool = False,
    *,
    device: str | torch.device = "cpu",
    torch_threads: int | None = None,
) -> EpochLoader:
    """Outlier Exposure loader: the run's training ``seed``, a new random order every epoch
    (``derive_seed(seed, "outlier_order") + epoch``, unrelated to the training order), full
    batches only, no augmentation. Labels are passed as stored (the
    outlier loss ignores them). Use ``cycle(loader)`` to draw from it without epoch
    boundaries."""
    return make_train_loader(
        beton,
        Augmentation(),
        batch_size,
        seed,
        None,
        num_workers,
        True,
        distributed,
        device=device,
        torch_threads=torch_threads,
        order_purpose="outlier_order",
    )
