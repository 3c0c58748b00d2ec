"""What the feature-based detectors are fit on, and the checks they share.

Penultimate features ``f`` (the input of the classifier head, ``model.forward_features``) of a
training subset with its class labels, and the head ``z = W f + b``
(``model.get_classifier()``): ViM and ReAct need ``W`` and ``b``. Everything is float64.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["TrainingFeatures", "as_features", "head_logits", "training_features"]


def as_features(x: Any, name: str = "features", dim: int | None = None) -> np.ndarray:
    """``x`` as a float64 (N, F) array; ValueError for another shape, an empty or a
    non-finite array, or (with ``dim``) another feature dimension."""
    a = np.asarray(x)
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be real numbers, got dtype {a.dtype}")
    a = a.astype(np.float64, copy=False)
    if a.ndim != 2 or a.shape[0] == 0:
        raise ValueError(f"{name} must have shape (N, F) with N >= 1, got {a.shape}")
    if dim is not None and a.shape[1] != dim:
        raise ValueError(f"{name} have {a.shape[1]} dimensions, the detector was fit on {dim}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contain NaN or infinite values")
    return a


@dataclass(frozen=True)
class TrainingFeatures:
    """``features`` (N, F) and ``labels`` (N,) of in-distribution training samples; the
    classifier head ``weight`` (C, F) and ``bias`` (C,). Build it with
    :func:`training_features`, which checks the shapes."""

    features: np.ndarray
    labels: np.ndarray
    weight: np.ndarray
    bias: np.ndarray

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])


def training_features(features: Any, labels: Any, weight: Any, bias: Any) -> TrainingFeatures:
    """A validated :class:`TrainingFeatures` (float64; labels int64 class indices)."""
    f = as_features(features, "training features")
    y = np.asarray(labels)
    w = np.asarray(weight, dtype=np.float64)
    b = np.asarray(bias, dtype=np.float64).reshape(-1)
    if w.ndim != 2 or w.shape[1] != f.shape[1] or b.shape != (w.shape[0],):
        raise ValueError(
            f"classifier head: weight (C, {f.shape[1]}) and bias (C,) expected, "
            f"got {w.shape} and {b.shape}"
        )
    if y.shape != (f.shape[0],) or y.dtype.kind not in "iu":
        raise ValueError(f"labels must be {f.shape[0]} integers, got {y.dtype} {y.shape}")
    if y.min() < 0 or y.max() >= w.shape[0]:
        raise ValueError(f"labels must be class indices in [0, {w.shape[0]})")
    return TrainingFeatures(f, y.astype(np.int64), w, b)


def head_logits(features: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """``z = f W^T + b`` in float64, (N, C)."""
    return features @ weight.T + bias
