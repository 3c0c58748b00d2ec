"""uint8 images to the model's input range inside the loader: ``x / 255`` as float32.

The Numba counterpart of ``fastmix.data.inputs.to_model_input`` (same numbers, tested), used by
the no-augmentation pipeline and as PixMix's starting image.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from fastmix.augment.kinds import register_augmentation
from fastmix.rng import _i64

_F255 = np.float32(255.0)


@njit(cache=True, error_model="numpy")
def u8_to_unit(src, dst):
    """``dst = src / 255`` (float32) for one uint8 (H, W) image."""
    for y in range(src.shape[0]):
        for x in range(src.shape[1]):
            dst[y, x] = np.float32(_i64(src[y, x])) / _F255


@njit(cache=True, parallel=True, nogil=True, error_model="numpy")
def to_unit_batch(images, out):
    """``out = images / 255`` as float32 (the no-augmentation pipeline); prange over the batch."""
    for i in prange(images.shape[0]):
        u8_to_unit(images[i], out[i])


def _unit_view(images, indices, out, seed, epoch, augmentation, bank, launch) -> None:
    to_unit_batch(images, out)


register_augmentation("none", kernel=to_unit_batch, random=False, call=_unit_view)
