"""Mahalanobis distance to the closest class-conditional Gaussian (Lee et al. 2018).

Lee, Lee, Lee & Shin, "A Simple Unified Framework for Detecting Out-of-Distribution Samples and
Adversarial Attacks", NeurIPS 2018: the penultimate features of class ``c`` are modelled as
``N(mu_c, Sigma)`` with class means ``mu_c`` and ONE covariance shared by all classes (the
maximum-likelihood "tied" estimate), both from training features. The anomaly score is the
distance to the closest class::

    score(f) = min_c (f - mu_c)^T Sigma^+ (f - mu_c)

(the paper's confidence ``M(x) = max_c -(...)``, negated). ``Sigma^+`` is the pseudo-inverse
(``scipy.linalg.pinvh``, as scikit-learn's ``EmpiricalCovariance``). No input preprocessing and
no ensemble over layers: the paper tunes both (the noise magnitude and the layer weights) on OOD
validation samples, and nothing here is tuned on OOD data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastmix.evaluate.detectors.common import TrainingFeatures, as_features

__all__ = [
    "FORMULA",
    "USES",
    "HYPERPARAMETERS",
    "PAPER",
    "MahalanobisFit",
    "fit",
    "hyperparameters",
    "score",
]

USES = ("features",)  # what it reads (fastmix.evaluate.detectors.registry.USES)
PAPER = (
    "Lee, Lee, Lee & Shin, A Simple Unified Framework for Detecting Out-of-Distribution "
    "Samples and Adversarial Attacks, NeurIPS 2018"
)
FORMULA = (
    "min_c (f - mu_c)^T Sigma^+ (f - mu_c): class means mu_c and one shared covariance "
    "Sigma of the training features (Lee et al. 2018)"
)
HYPERPARAMETERS = {
    "layer": "penultimate features",
    "covariance": "shared by all classes (tied maximum likelihood), pseudo-inverse",
    "input_preprocessing_epsilon": 0.0,
}


@dataclass(frozen=True)
class MahalanobisFit:
    """Class means (C, F) of the classes present in training, the shared precision (F, F) and
    a square root ``L`` of it (``precision = L L^T``), so that a distance is ``|L^T (f - mu)|^2``
    (an (F, F) product per sample, not one per sample and class)."""

    means: np.ndarray
    precision: np.ndarray
    root: np.ndarray


def fit(train: TrainingFeatures) -> MahalanobisFit:
    """Class means and the pseudo-inverse of the shared covariance
    ``Sigma = 1/N sum_i (f_i - mu_{y_i})(f_i - mu_{y_i})^T``."""
    from scipy.linalg import pinvh

    f, y = train.features, train.labels
    classes = np.unique(y)
    means = np.stack([f[y == c].mean(axis=0) for c in classes])
    centered = f - means[np.searchsorted(classes, y)]
    precision = pinvh(centered.T @ centered / len(f))
    w, v = np.linalg.eigh(precision)
    return MahalanobisFit(means, precision, v * np.sqrt(np.maximum(w, 0.0)))


def hyperparameters(fitted: MahalanobisFit) -> dict[str, object]:
    """What results.json records: the fixed choices and the number of classes fitted."""
    return {**HYPERPARAMETERS, "classes": len(fitted.means)}


def score(fitted: MahalanobisFit, features: np.ndarray) -> np.ndarray:
    """``min_c (f - mu_c)^T Sigma^+ (f - mu_c)`` per row, float64 (N,); higher = more
    anomalous."""
    f = as_features(features, dim=fitted.precision.shape[0]) @ fitted.root
    best = np.full(len(f), np.inf)
    for mu in fitted.means @ fitted.root:
        d = f - mu
        np.minimum(best, np.einsum("ij,ij->i", d, d), out=best)
    return best
