"""Distance to the k-th nearest training feature, on L2-normalised features (Sun et al. 2022).

Sun, Ming, Zhu & Li, "Out-of-Distribution Detection with Deep Nearest Neighbors", ICML 2022::

    z = f / ||f||,   score(f) = || z - z_(k) ||

where ``z_(k)`` is the k-th nearest normalised training feature (the paper thresholds the
negated distance). ``k = 50``, the paper's CIFAR-10 choice (10 classes, 50,000 training images).
The search is a float32 torch matmul top-k over the bank: ``||z - b||^2 = ||z||^2 - 2 (z.b -
||b||^2 / 2)``, so the k-th largest ``z.b - ||b||^2 / 2`` is the k-th nearest bank point (for
any norms, zero vectors included); float32 rounding moves a squared distance by up to ~1e-6.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastmix.evaluate.detectors.common import TrainingFeatures, as_features

__all__ = [
    "FORMULA",
    "USES",
    "HYPERPARAMETERS",
    "K",
    "PAPER",
    "KNNFit",
    "fit",
    "hyperparameters",
    "normalise",
    "score",
]

USES = ("features",)  # what it reads (fastmix.evaluate.detectors.registry.USES)
PAPER = "Sun, Ming, Zhu & Li, Out-of-Distribution Detection with Deep Nearest Neighbors, ICML 2022"
K = 50
FORMULA = (
    f"||z - z_(k)||, z = f / ||f||, z_(k) the k-th nearest L2-normalised training "
    f"feature, k = {K} (Sun et al. 2022)"
)
HYPERPARAMETERS = {"k": K, "normalisation": "L2, f / (||f|| + 1e-10)", "distance": "euclidean"}
_CHUNK = 2048  # query rows per matmul


def normalise(features: np.ndarray) -> np.ndarray:
    """``f / (||f||_2 + 1e-10)`` per row (the official code's normaliser), float64."""
    f = as_features(features)
    return f / (np.linalg.norm(f, axis=1, keepdims=True) + 1e-10)


@dataclass(frozen=True)
class KNNFit:
    """The normalised training features (the bank), (M, F) float64, and ``k``."""

    bank: np.ndarray
    k: int


def fit(train: TrainingFeatures, k: int = K) -> KNNFit:
    """The bank of normalised training features; ValueError when it has fewer than k rows."""
    if not 1 <= k <= len(train.features):
        raise ValueError(f"knn: k = {k} needs 1 <= k <= {len(train.features)} training features")
    return KNNFit(normalise(train.features), int(k))


def hyperparameters(fitted: KNNFit) -> dict[str, object]:
    """What results.json records: k, the normalisation, the bank size."""
    return {**HYPERPARAMETERS, "k": fitted.k, "bank": len(fitted.bank)}


def score(fitted: KNNFit, features: np.ndarray) -> np.ndarray:
    """Euclidean distance from each normalised row to its k-th nearest bank point, float64
    (N,); higher = more anomalous."""
    import torch

    z = normalise(as_features(features, dim=fitted.bank.shape[1]))
    bank = torch.from_numpy(fitted.bank.astype(np.float32))
    half_sq = 0.5 * (bank * bank).sum(dim=1)
    out = np.empty(len(z))
    for i in range(0, len(z), _CHUNK):
        q = z[i : i + _CHUNK]
        # k-th largest of z.b - ||b||^2 / 2 = the k-th nearest bank point
        g = torch.from_numpy(q.astype(np.float32)) @ bank.T - half_sq
        kth = torch.topk(g, fitted.k, dim=1, sorted=False).values.min(dim=1).values
        out[i : i + _CHUNK] = np.einsum("ij,ij->i", q, q) - 2.0 * kth.double().numpy()
    return np.sqrt(np.maximum(out, 0.0))
