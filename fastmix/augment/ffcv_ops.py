"""FFCV ``Operation``s that run the fastmix Numba kernels inside the FFCV loader.

Pipeline for the image field (``NDArrayField`` uint8 (H, W))::

    NDArrayDecoder() -> ToUnitFloat()                          -> ffcv ToTensor()
    ParallelNDArrayDecoder() -> SaltPepper(...) | PixMix(...) -> ffcv ToTensor()

Every op turns the decoded uint8 batch (B, H, W) into float32 (B, 1, H, W) in [0, 1] -- the one
model-input convention of fastmix (normalisation (x - 0.5) / 0.5 happens in the model).

How the work is done. Each op declares ``jit_mode=False``, so FFCV calls its code as a plain
Python function once per batch (in the loader's worker thread) instead of compiling it into the
pipeline. That function makes ONE call to a cached, ``parallel=True, nogil=True`` batch kernel of
``fastmix.augment.pixmix`` (a ``prange`` over the batch, as many threads as the loader's ``num_workers``,
which FFCV sets with ``numba.set_num_threads`` in that thread), load-balanced with Numba's
dynamic schedule (``run_load_balanced``). Consequences:

* no per-loader JIT: the kernels come from Numba's on-disk cache, so building a loader costs
  only FFCV's own decoder compilation;
* the fractal bank and the epoch are ordinary *arguments* of the kernel call. Numba freezes any
  array that compiled code captures from a closure or global into a compile-time constant (a
  copy, and a mutable epoch array would stay frozen at its first value). Here the bank array is
  passed by reference on every batch (never copied), and the epoch is read from the op at batch
  time.

The epoch: FFCV never tells an op which epoch it is in. ``SaltPepper`` and ``PixMix`` hold an
``epoch`` attribute that ``fastmix.data.loader.EpochLoader`` sets with ``set_epoch`` right before it
starts each FFCV epoch (FFCV's ``Loader.next_epoch``, the same counter that seeds the RANDOM
order), after it has stopped any unfinished iterator of the previous epoch, so no batch of one
epoch can be computed with another epoch's number. The sample index comes from FFCV
(``with_indices``), so every sample's randomness is ``sample_state(seed, epoch, index)``: the
same whatever the thread count, batch composition or order.

Numba's threading layer must be thread-safe (TBB or OpenMP, Numba's default preference) when two
loaders run at once (in-distribution + outlier loader): the ``workqueue`` fallback aborts on
concurrent parallel launches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numba
import numpy as np
from ffcv.fields.decoders import NDArrayDecoder
from ffcv.pipeline.allocation_query import AllocationQuery
from ffcv.pipeline.operation import Operation
from ffcv.pipeline.state import State

from fastmix.augment import pillow_ops, pixmix, salt_pepper, unit
from fastmix.errors import ConfigError, DataError

_F32 = np.dtype(np.float32)

# Iterations of each kernel's prange per scheduled task (numba.set_parallel_chunksize), chosen
# by bench measurements on 2 cores (bench/RESULTS.md): one PixMix iteration is a chunk of
# pixmix.BATCH_CHUNK = 4 samples (~40 us); one salt-and-pepper iteration is one sample (~1 us).
PIXMIX_TASK_ITERATIONS = 1
SALT_PEPPER_TASK_ITERATIONS = 32


def run_load_balanced(kernel: Callable, task_iterations: int, *args) -> None:
    """Call the ``prange`` kernel ``kernel(*args)`` with Numba's dynamic schedule: the loop is
    cut into tasks of ``task_iterations`` iterations that idle threads take in turn.

    Numba's default schedule (chunksize 0) cuts a ``prange`` into one contiguous block per
    thread, so a batch ends when the slowest block does. On a 2-core machine the loader's own
    thread, the training or consuming thread and other processes preempt one worker now and
    then, and with static blocks the other one then waits idle at the end of the batch.
    Measured in the FFCV loader (PixMix, 2 vs 1 thread, interleaved): 1.75-1.80x static,
    1.81-1.99x dynamic. The output does not change: every sample draws from its own stream.
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
    compiles it serial and the copy runs on one thread while the other cores wait: with a
    random order every sample is a cache miss (~0.35 ms per batch of 512 here, ~10% of a
    PixMix batch on 2 threads). Marked parallel, it splits over the loader's threads (about
    +0.6 s of compilation per loader, measured)."""

    def generate_code(self) -> Callable:
        decoder = super().generate_code()
        decoder.is_parallel = True
        return decoder


class _UnitFloatOp(Operation):
    """Shared plumbing: uint8 (B, H, W) in, float32 (B, 1, H, W) out, Python-level code."""

    def __init__(self) -> None:
        super().__init__()
        self.hw: tuple[int, int] | None = None

    def declare_state_and_memory(self, previous_state: State) -> tuple[State, AllocationQuery]:
        h, w = _image_shape(previous_state, type(self).__name__)
        self._check_shape(h, w)
        self.hw = (h, w)
        state = replace(previous_state, jit_mode=False, shape=(1, h, w), dtype=_F32)
        return state, AllocationQuery((1, h, w), _F32)

    def _check_shape(self, h: int, w: int) -> None:
        pass


class ToUnitFloat(_UnitFloatOp):
    """No augmentation: ``x / 255`` as float32 (B, 1, H, W)."""

    def generate_code(self) -> Callable:
        kernel = unit.to_unit_batch

        def to_unit_float(images, dst):
            n = images.shape[0]
            kernel(images, dst.reshape(n, images.shape[1], images.shape[2]))
            return dst

        return to_unit_float


class _EpochOp(_UnitFloatOp):
    """An op whose randomness is ``sample_state(seed, epoch, index)``."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ConfigError(f"{type(self).__name__}: seed must be an integer, got {seed!r}")
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Epoch used by every batch computed from now on (set before an FFCV epoch starts)."""
        self.epoch = int(epoch)


class SaltPepper(_EpochOp):
    """Salt-and-pepper noise (scikit-image ``random_noise`` 's&p'): each pixel independently
    replaced with probability ``amount``, by 0 or 255 with equal odds; see
    ``fastmix.augment.salt_pepper.salt_pepper_batch``. Default amount 0.1 (MNIST-C impulse_noise is 0.17)."""

    def __init__(self, seed: int, amount: float = salt_pepper.SP_AMOUNT) -> None:
        super().__init__(seed)
        if not 0.0 <= float(amount) <= 1.0:
            raise ConfigError(f"SaltPepper: amount must lie in [0, 1], got {amount!r}")
        self.amount = float(amount)

    def generate_code(self) -> Callable:
        kernel = salt_pepper.salt_pepper_batch
        op = self

        def salt_pepper_op(images, dst, indices):
            n = images.shape[0]
            out = dst.reshape(n, images.shape[1], images.shape[2])
            run_load_balanced(kernel, SALT_PEPPER_TASK_ITERATIONS,
                              images, indices.astype(np.int64), out, op.seed, op.epoch,
                              op.amount)  # fmt: skip
            return dst

        salt_pepper_op.with_indices = True
        return salt_pepper_op


def validate_bank(bank: np.ndarray) -> np.ndarray:
    """The mixing bank as a C-contiguous uint8 (M, S1, S2) array; DataError if it is not one."""
    if not isinstance(bank, np.ndarray) or bank.dtype != np.uint8 or bank.ndim != 3:
        raise DataError(
            "PixMix: fractal_bank must be a uint8 array of shape (M, S, S), got "
            f"{getattr(bank, 'dtype', type(bank))} {getattr(bank, 'shape', '')}"
        )
    if bank.shape[0] == 0:
        raise DataError("PixMix: fractal_bank is empty")
    return np.ascontiguousarray(bank)


class PixMix(_EpochOp):
    """PixMix (Hendrycks et al., CVPR 2022) with one random crop of one bank picture per sample;
    see ``fastmix.augment.pixmix`` for the algorithm and the parameters' meaning.

    ``bank``: uint8 (M, S, S) mixing pictures (S >= image size; fractals at S = 32), kept by
    reference and shared by every batch.
    """

    def __init__(
        self,
        bank: np.ndarray,
        seed: int,
        k: int = pixmix.PIXMIX_K,
        beta: float = pixmix.PIXMIX_BETA,
        severity: float = pixmix.AUG_SEVERITY,
        all_ops: bool = False,
    ) -> None:
        super().__init__(seed)
        self.bank = validate_bank(bank)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= 64:
            raise ConfigError(f"PixMix: k (mixing rounds) must be an integer in [0, 64], got {k!r}")
        if not float(beta) > 0.0:
            raise ConfigError(f"PixMix: beta must be > 0, got {beta!r}")
        if not 0.1 < float(severity) <= pixmix.MAX_SEVERITY:
            raise ConfigError(
                f"PixMix: aug_severity must lie in (0.1, {pixmix.MAX_SEVERITY:g}], "
                f"got {severity!r}"
            )
        self.k = int(k)
        self.beta = float(beta)
        self.severity = float(severity)
        self.n_ops = pillow_ops.N_OPS_ALL if all_ops else pillow_ops.N_OPS_BASIC

    def _check_shape(self, h: int, w: int) -> None:
        if self.bank.shape[1] < h or self.bank.shape[2] < w:
            raise DataError(
                f"PixMix: fractal_bank pictures {self.bank.shape[1:]} are smaller than the "
                f"images ({h}, {w}); they are random-cropped to the image size"
            )

    def generate_code(self) -> Callable:
        kernel = pixmix.pixmix_batch
        op = self

        def pixmix_op(images, dst, indices):
            n = images.shape[0]
            out = dst.reshape(n, images.shape[1], images.shape[2])
            run_load_balanced(kernel, PIXMIX_TASK_ITERATIONS,
                              images, indices.astype(np.int64), op.bank, out, op.seed,
                              op.epoch, op.k, op.beta, op.severity, op.n_ops)  # fmt: skip
            return dst

        pixmix_op.with_indices = True
        return pixmix_op
