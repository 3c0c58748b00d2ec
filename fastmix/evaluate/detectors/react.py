"""ReAct: energy of the logits after clipping the penultimate activations (Sun et al. 2021).

Sun, Guo & Li, "ReAct: Out-of-distribution Detection With Rectified Activations", NeurIPS
2021. With ``c`` the 90th percentile of all training activations (every unit of every training
feature vector, the paper's default ``p = 90``)::

    score(f) = -logsumexp_k (W min(f, c) + b)_k

the free energy (Liu et al. 2020, ``T = 1``) of the rectified features; higher = more
anomalous.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastmix.evaluate.detectors.common import TrainingFeatures, as_features, head_logits
from fastmix.evaluate.scores import logsumexp

__all__ = ["FORMULA", "USES", "PAPER", "PERCENTILE", "ReActFit", "fit", "hyperparameters", "score"]

USES = ("features", "head")  # what it reads (fastmix.evaluate.detectors.registry.USES)
PAPER = (
    "Sun, Guo & Li, ReAct: Out-of-distribution Detection With Rectified Activations, NeurIPS 2021"
)
PERCENTILE = 90.0
FORMULA = (
    f"-logsumexp(W min(f, c) + b), c = the {PERCENTILE:g}th percentile of the training "
    "activations (Sun et al. 2021)"
)


@dataclass(frozen=True)
class ReActFit:
    """Clipping threshold ``c``, its percentile, and the head ``weight`` (C, F), ``bias``."""

    threshold: float
    percentile: float
    weight: np.ndarray
    bias: np.ndarray


def fit(train: TrainingFeatures, percentile: float = PERCENTILE) -> ReActFit:
    """``c`` = the ``percentile``-th percentile of all training activations (``np.percentile``,
    linear interpolation)."""
    if not 0 < percentile <= 100:
        raise ValueError(f"react: percentile must lie in (0, 100], got {percentile}")
    c = float(np.percentile(train.features.ravel(), percentile))
    return ReActFit(c, float(percentile), train.weight, train.bias)


def hyperparameters(fitted: ReActFit) -> dict[str, float]:
    """What results.json records: the percentile and the threshold it gave."""
    return {"percentile": fitted.percentile, "threshold": fitted.threshold}


def score(fitted: ReActFit, features: np.ndarray) -> np.ndarray:
    """``-logsumexp(W min(f, c) + b)``, float64 (N,); higher = more anomalous."""
    f = as_features(features, dim=fitted.weight.shape[1])
    return -logsumexp(head_logits(np.minimum(f, fitted.threshold), fitted.weight, fitted.bias))
