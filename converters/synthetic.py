"""Synthetic OOD sets (Hendrycks et al., "Deep Anomaly Detection with Outlier Exposure", ICLR 2019).

The OE paper's MNIST OOD suite includes i.i.d. noise images and negative (inverted) MNIST.
All sets are 28x28 uint8, label -1, deterministic for a seed (numpy PCG64 via SeedSequence):
- gaussian: each pixel ``clip(N(0.5, 0.5**2), 0, 1)``, quantised to uint8;
- bernoulli: each pixel 0 or 255 with probability 1/2;
- uniform: each pixel ``U{0..255}``;
- inverted MNIST: ``255 - x`` for the MNIST test images (negative MNIST).
"""

from __future__ import annotations

import numpy as np

GENERATOR_VERSION = "1"
_SIZE = (28, 28)


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, stream]))


def gaussian_noise(n: int, seed: int = 0) -> np.ndarray:
    """``clip(N(0.5, 0.5^2), 0, 1) * 255`` per pixel, rounded to uint8."""
    x = _rng(seed, 1).normal(0.5, 0.5, size=(n, *_SIZE))
    return np.rint(np.clip(x, 0.0, 1.0) * 255).astype(np.uint8)


def bernoulli_noise(n: int, seed: int = 0) -> np.ndarray:
    """Each pixel 0 or 255 with probability 1/2."""
    return (_rng(seed, 2).random(size=(n, *_SIZE)) < 0.5).astype(np.uint8) * 255


def uniform_noise(n: int, seed: int = 0) -> np.ndarray:
    """Each pixel drawn uniformly from {0, ..., 255}."""
    return _rng(seed, 3).integers(0, 256, size=(n, *_SIZE), dtype=np.uint8)


def invert(images: np.ndarray) -> np.ndarray:
    """Negative images, ``255 - x``."""
    return (255 - images).astype(np.uint8)
