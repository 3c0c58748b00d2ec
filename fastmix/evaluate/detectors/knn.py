"""Distance to the k-th nearest training feature, on L2-normalised features (Sun et al. 2022).

Sun, Ming, Zhu & Li, "Out-of-Distribution Detection with Deep Nearest Neighbors", ICML 2022::

    z = f / ||f||,   score(f) = || z - z_(k) ||

where ``z_(k)`` is the k-th nearest normalised training feature (the paper thresholds the
negated distance). ``k = 50``, the paper's CIFAR-10 choice (10 classes, 50,000 training images).
The search is a torch matmul top-k over the bank (float32 cosine similarities, the best
``k + 16`` candidates then re-ranked by their exact float64 distances), which returns the exact
k-th distance unless more than 16 bank points tie with it to float32 precision.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastmix.evaluate.detectors.common import TrainingFeatures, as_features

__all__ = ["FORMULA", "HYPERPARAMETERS", "K", "PAPER", "KNNFit", "fit", "hyperparameters",
           "normalise", "score"]

PAPER = "Sun, Ming, Zhu & Li, Out-of-Distribution Detection with Deep Nearest Neighbors, ICML 2022"
K = 50
FORMULA = (f"||z - z_(k)||, z = f / ||f||, z_(k) the k-th nearest L2-normalised training "
           f"feature, k = {K} (Sun et al. 2022)")
HYPERPARAMETERS = {"k": K, "normalisation": "L2, f / (||f|| + 1e-10)", "distance": "euclidean"}
_MARGIN = 16  # extra float32 candidates re-ranked in float64
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
    bank64 = fitted.bank
    bank32 = torch.from_numpy(bank64.astype(np.float32))
    m = min(len(bank64), fitted.k + _MARGIN)
    out = np.empty(len(z))
    for i in range(0, len(z), _CHUNK):
        q = z[i:i + _CHUNK]
        sim = torch.from_numpy(q.astype(np.float32)) @ bank32.T
        cand = torch.topk(sim, m, dim=1).indices.numpy()
        d = np.linalg.norm(q[:, None, :] - bank64[cand], axis=2)
        out[i:i + _CHUNK] = np.partition(d, fitted.k - 1, axis=1)[:, fitted.k - 1]
    return out
