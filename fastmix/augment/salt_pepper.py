"""Salt-and-pepper noise as a Numba kernel, one sample or a whole batch.

Salt-and-pepper (scikit-image ``random_noise(mode="s&p")`` semantics): every pixel independently
is replaced with probability ``amount``; a replaced pixel becomes salt (255) or pepper (0) with
equal odds. One uint64 per pixel: its top 53 bits decide the replacement (uniform < amount), its
lowest bit salt vs pepper. Default ``SP_AMOUNT = 0.1``: MNIST-C's ``impulse_noise`` is this very
noise at amount 0.17, so training at 0.17 would put one test corruption in the training
distribution; 0.1 (twice scikit-image's default 0.05) is strong enough to matter and stays below
the test severity. The overlap in kind with impulse_noise remains and must be reported with any
MNIST-C number of an S&P model.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from fastmix.augment.kinds import Param, register_augmentation
from fastmix.augment.pillow_ops import _F0, _F1, _F255
from fastmix.rng import _i64, next_u64, sample_state, unit_from_u64

SP_AMOUNT = 0.1


@njit(cache=True, error_model="numpy")
def salt_pepper_sample(x, out, seed, epoch, index, amount):
    """Salt-and-pepper noise on one uint8 image into ``out`` (float32 in [0, 1]): per pixel one
    uint64 z; replaced iff top-53-bit uniform < amount; then 1.0 if z is odd else 0.0."""
    state = np.empty(1, dtype=np.uint64)
    state[0] = sample_state(seed, epoch, index)
    for y in range(x.shape[0]):
        for c in range(x.shape[1]):
            z = next_u64(state)
            if unit_from_u64(z) < amount:
                out[y, c] = _F1 if (z & 1) == 1 else _F0
            else:
                out[y, c] = np.float32(_i64(x[y, c])) / _F255


@njit(cache=True, parallel=True, nogil=True, error_model="numpy")
def salt_pepper_batch(images, indices, out, seed, epoch, amount):
    """Salt-and-pepper a batch: ``out[i]`` float32 (B, H, W) in [0, 1] from uint8 ``images[i]``,
    stream ``sample_state(seed, epoch, indices[i])``; prange over the batch."""
    for i in prange(images.shape[0]):
        salt_pepper_sample(images[i], out[i], seed, epoch, indices[i], amount)


register_augmentation(
    "sp",
    kernel=salt_pepper_batch,
    params={"sp_amount": Param(SP_AMOUNT, 0.0, 1.0, help="fraction of pixels replaced")},
    task_iterations=32,  # one iteration is one sample: 32 per task keep the overhead small
)
