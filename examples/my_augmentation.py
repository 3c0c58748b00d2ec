"""Bring your own augmentation: Cutout (DeVries & Taylor, "Improved Regularization of
Convolutional Neural Networks with Cutout", 2017) as a Numba kernel, ``augment.kind = "cutout"``.

    fastmix train --plugin examples/my_augmentation.py --set augment.kind='"cutout"'

Per sample: a centre ``(cy, cx)`` uniform over the image, then every pixel within
``cutout_size / 2`` of it (a square, clipped at the border) is set to 0; the others are
``x / 255``. The kernel's signature is the registry's: ``(images uint8 (B, H, W), indices
int64 (B,), out float32 (B, H, W), seed, epoch, *parameters)``. Its draws come from the
sample's own stream ``sample_state(seed, epoch, index)``, so a sample gets the same square
whatever batch or thread it lands in; the seed is the view's, derived from the training seed and
the kind's seed tag. ``cutout_size`` becomes the config key ``augment.cutout_size`` with the
range declared here.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

import fastmix
from fastmix.rng import new_state, randint


@njit(cache=True, parallel=True, nogil=True)
def cutout_batch(images, indices, out, seed, epoch, size):
    """Cutout of a batch (module docstring); prange over the samples."""
    n, h, w = images.shape
    for i in prange(n):
        state = new_state(seed, epoch, indices[i])
        cy = randint(state, 0, h - 1)
        cx = randint(state, 0, w - 1)
        for y in range(h):
            for x in range(w):
                inside = 2 * abs(y - cy) < size and 2 * abs(x - cx) < size
                out[i, y, x] = 0.0 if inside else np.float32(images[i, y, x]) / np.float32(255)


fastmix.register_augmentation(
    "cutout",
    kernel=cutout_batch,
    params={"cutout_size": fastmix.Param(8, 1, 28, help="side of the square, pixels")},
)
