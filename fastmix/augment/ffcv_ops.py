"""The FFCV ``Operation`` that runs the fastmix Numba kernels inside the FFCV loader.

Pipeline for the image field (``NDArrayField`` uint8 (H, W))::

    NDArrayDecoder() or ParallelNDArrayDecoder() -> Views([augmentation, ...]) -> ToTensor()

``Views`` turns each decoded uint8 batch (B, H, W) into V float32 views in [0, 1], one per
augmentation (``fastmix.augment.spec.Augmentation``: none = ``x / 255``, salt-and-pepper,
PixMix), from one read and one decode. Normalisation, if any, is the model's first step.

Memory layout: FFCV allocates the op's output as (B, V, H, W) (it always puts the batch
first), but ``Views`` writes it *view-major*: the buffer's memory holds view 0 of the whole
batch, then view 1, ... (``dst.reshape(V, B, H, W)[v]``). So every view is one contiguous
(B, H, W) block that the kernels write at full speed and the trainer reads without a copy;
``fastmix.data.loader.EpochLoader`` reinterprets the tensor as (V, B, 1, H, W). With V = 1 the
two layouts coincide.

How the work is done. ``Views`` declares ``jit_mode=False``, so FFCV calls its code as a plain
Python function once per batch (in the loader's worker thread) instead of compiling it into the
pipeline. That function makes one call per view to a cached, ``parallel=True, nogil=True``
batch kernel (the registered kind's, :mod:`fastmix.augment.kinds`: a ``prange`` over the
batch on as many threads as the loader's ``num_workers``, which FFCV sets with
``numba.set_num_threads`` in that thread), load-balanced with Numba's dynamic schedule
(``run_load_balanced``). Consequences:

* no per-loader JIT: the kernels come from Numba's on-disk cache, so building a loader costs
  only FFCV's own decoder compilation;
* the fractal bank and the epoch are ordinary *arguments* of the kernel call. Numba freezes any
  array that compiled code captures from a closure or global into a compile-time constant (a
  copy, and a mutable epoch would stay frozen at its first value). Here the bank array is
  passed by reference on every batch (never copied), and the epoch is read from the op at batch
  time.

The epoch: FFCV never tells an op which epoch it is in. ``Views`` holds an ``epoch`` attribute
that ``fastmix.data.loader.EpochLoader`` sets with ``set_epoch`` right before it starts each
FFCV epoch (FFCV's ``Loader.next_epoch``, the same counter that seeds the RANDOM order), after
it has stopped any unfinished iterator of the previous epoch, so no batch of one epoch can be
computed with another epoch's number. The sample index comes from FFCV (``with_indices``), so
every sample's randomness is ``sample_state(view_seed, epoch, index)``: the same whatever the
thread count, batch composition, order, or the other views computed beside it.

Numba's threading layer must be thread-safe (TBB or OpenMP, Numba's default preference) when two
loaders run at once (in-distribution + outlier loader): the ``workqueue`` fallback aborts on
concurrent parallel launches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numba
import numpy as np
from ffcv.fields.decoders import NDArrayDecoder
from ffcv.pipeline.allocation_query import AllocationQuery
from ffcv.pipeline.operation import Operation
from ffcv.pipeline.state import State

from fastmix.augment.spec import Augmentation, validate_bank, view_seed
from fastmix.errors import ConfigError, DataError

_F32 = np.dtype(np.float32)


def run_load_balanced(kernel: Callable, task_iterations: int, *args) -> None:
    """Call the ``prange`` kernel ``kernel(*args)`` with Numba's dynamic schedule: the loop is
    cut into tasks of ``task_iterations`` iterations that idle threads take in turn.

    Numba's default schedule (chunksize 0) cuts a ``prange`` into one contiguous block per
    thread, so a batch ends when the slowest block does. On a 2-core machine the loader's own
    thread, the training or consuming thread and other processes preempt one worker now and
    then, and with static blocks the other one then waits idle at the end of the batch. The
    output does not change: every sample draws from its own stream.
    The calling thread's previous chunk size is restored, also when the kernel raises."""
    previous = numba.set_parallel_chunksize(task_iterations)
    try:
        kernel(*args)
    finally:
        numba.set_parallel_chunksize(previous)


def _image_shape(previous_state: State, op_name: str) -> tuple[int, int]:
    shape = tuple(previous_state.shape or ())
    if len(shape) != 2 or np.dtype(previous_state.dtype) != np.uint8:
        raise DataError(
            f"{op_name}: expects a uint8 (H, W) image field (NDArrayDecoder), got "
            f"{previous_state.dtype} {shape}"
        )
    return int(shape[0]), int(shape[1])


class ParallelNDArrayDecoder(NDArrayDecoder):
    """ffcv's ``NDArrayDecoder`` with its per-sample copy loop compiled ``parallel=True``.

    ffcv's decoder loops over the batch with ``Compiler.get_iterator()`` (``prange`` when the
    loader has more than one thread) but never marks itself ``is_parallel``, so ``Compiler``
    compiles it serial and the copy runs on one thread while the other cores wait (with a
    random order every sample is a cache miss). Marked parallel, it splits over the loader's
    threads, for a little more compilation per loader."""

    def generate_code(self) -> Callable:
        decoder = super().generate_code()
        decoder.is_parallel = True
        return decoder


class Views(Operation):
    """V augmented views of each uint8 (B, H, W) batch as float32 in [0, 1], written view-major
    into a (B, V, H, W) buffer (module docstring); view ``v`` is ``augmentations[v]`` with the
    per-sample seed ``view_seed(seed, augmentations[v])``.

    ``bank``: uint8 (M, S, S) PixMix mixing pictures (S >= image size; fractals at S = 32),
    required when a view is PixMix, kept by reference and shared by every batch."""

    def __init__(
        self, augmentations: Sequence[Augmentation], seed: int = 0, bank: np.ndarray | None = None
    ) -> None:
        super().__init__()
        if not augmentations:
            raise ConfigError("Views: at least one augmentation is needed")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ConfigError(f"Views: seed must be an integer, got {seed!r}")
        self.augmentations = tuple(augmentations)
        self.seeds = tuple(view_seed(int(seed), a) for a in self.augmentations)
        self.bank = None
        if any(a.spec.needs_bank for a in self.augmentations):
            if bank is None:
                raise ConfigError("PixMix needs a fractal_bank (uint8 (M, S, S) mixing pictures)")
            self.bank = validate_bank(bank)
        self.epoch = 0

    @property
    def augments(self) -> bool:
        """Whether any view is random (any kind but ``none``)."""
        return any(a.spec.random for a in self.augmentations)

    def set_epoch(self, epoch: int) -> None:
        """Epoch used by every batch computed from now on (set before an FFCV epoch starts)."""
        self.epoch = int(epoch)

    def declare_state_and_memory(self, previous_state: State) -> tuple[State, AllocationQuery]:
        h, w = _image_shape(previous_state, "Views")
        if self.bank is not None and (self.bank.shape[1] < h or self.bank.shape[2] < w):
            raise DataError(
                f"PixMix: fractal_bank pictures {self.bank.shape[1:]} are smaller than the "
                f"images ({h}, {w}); they are random-cropped to the image size"
            )
        shape = (len(self.augmentations), h, w)
        return replace(previous_state, jit_mode=False, shape=shape, dtype=_F32), AllocationQuery(
            shape, _F32
        )

    def generate_code(self) -> Callable:
        op = self

        def views(images, dst, indices):
            n, h, w = images.shape
            out = dst.reshape(len(op.augmentations), n, h, w)  # view-major (module doc)
            idx = indices.astype(np.int64)
            for v, (a, seed) in enumerate(zip(op.augmentations, op.seeds, strict=True)):
                kind = a.spec  # fastmix.augment.kinds: the kernel and how to call it
                if kind.call is not None:
                    kind.call(images, idx, out[v], seed, op.epoch, a, op.bank, run_load_balanced)
                else:
                    run_load_balanced(
                        kind.kernel,
                        kind.task_iterations,
                        images,
                        idx,
                        out[v],
                        seed,
                        op.epoch,
                        *a.values,
                    )
            return dst

        views.with_indices = True
        return views
