"""Anomaly scores from classifier logits (pure numpy, float64).

Every score maps logits ``z`` of shape (N, C) to a 1-d array of N anomaly scores where
HIGHER = MORE ANOMALOUS (OOD is the positive class in :mod:`fastmix.evaluate.metrics`).  Inputs
of any real dtype are converted to float64 first: float32 softmax saturates at 1.0 on MNIST and
turns distinct inputs into ties.  Non-finite logits raise ``ValueError``.

One method per function, formula in the docstring:

========== ======================================== =========================================
name       anomaly score                            paper
========== ======================================== =========================================
msp        ``-max_k softmax(z)_k``                  Hendrycks & Gimpel, ICLR 2017
xent       ``mean_k z_k - logsumexp(z)``            Hendrycks et al. (Outlier Exposure), 2019
energy     ``-T logsumexp(z / T)``                  Liu et al., NeurIPS 2020
maxlogit   ``-max_k z_k``                           Hendrycks et al., ICML 2022
entropy    ``-sum_k p_k log p_k``                   (predictive entropy)
========== ======================================== =========================================

``SCORES`` maps these names to the functions.  :func:`msp_logit` is an extra, strictly
monotone transform of MSP that does not saturate (see its docstring); it is not in ``SCORES``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = [
    "SCORES",
    "check_logits_labels",
    "energy",
    "entropy",
    "log_softmax",
    "logsumexp",
    "max_logit",
    "msp",
    "msp_logit",
    "oe_xent",
    "softmax",
]


def _as_logits(logits: np.ndarray) -> np.ndarray:
    """Return ``logits`` as a float64 (N, C) array, raising ValueError on bad input."""
    z = np.asarray(logits)
    if z.dtype.kind not in "biuf":
        raise ValueError(f"logits must be a real numeric array, got dtype {z.dtype}")
    z = z.astype(np.float64, copy=False)
    if z.ndim != 2:
        raise ValueError(f"logits must have shape (N, C), got shape {z.shape}")
    if z.shape[1] < 1:
        raise ValueError(f"logits need at least one class, got shape {z.shape}")
    if not np.all(np.isfinite(z)):
        raise ValueError("logits contain NaN or infinite values")
    return z


def logsumexp(logits: np.ndarray) -> np.ndarray:
    """Row-wise ``log sum_k exp(z_k)`` computed stably as ``m + log sum_k exp(z_k - m)``,
    ``m = max_k z_k``; float64, shape (N,)."""
    z = _as_logits(logits)
    m = z.max(axis=1)
    return m + np.log(np.exp(z - m[:, None]).sum(axis=1))


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise ``log softmax(z)_k = z_k - logsumexp(z)`` in float64, shape (N, C).

    Computed as ``(z_k - m) - log1p(s)``, ``m = max z``, ``s = sum_{j != argmax} exp(z_j - m)``,
    so the top class keeps full relative precision (``-s`` for tiny ``s``)."""
    z = _as_logits(logits)
    m = z.max(axis=1)
    # (z - m) - log1p(s) with s = sum over the non-argmax terms: accurate near 0 for the top class
    return (z - m[:, None]) - np.log1p(_others_over_max(z))[:, None]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise ``softmax(z)_k = exp(z_k - logsumexp(z))`` in float64, shape (N, C)."""
    return np.exp(log_softmax(logits))


def _others_over_max(z: np.ndarray) -> np.ndarray:
    """``s_i = sum_{k != argmax} exp(z_ik - max_k z_ik)`` (exactly one argmax entry removed)."""
    m = z.max(axis=1)
    e = np.exp(z - m[:, None])
    e[np.arange(z.shape[0]), z.argmax(axis=1)] = 0.0
    return e.sum(axis=1)


def msp(logits: np.ndarray) -> np.ndarray:
    """Maximum softmax probability, as an anomaly score: ``-max_k softmax(z)_k``.

    Hendrycks & Gimpel, "A Baseline for Detecting Misclassified and Out-of-Distribution
    Examples in Neural Networks", ICLR 2017.  Values lie in ``[-1, -1/C]``.

    Computed as ``-1 / (1 + s)`` with ``s = sum_{k != argmax} exp(z_k - max z)``, which equals
    ``-exp(max_k log_softmax(z)_k)`` with a single rounding.  Float64 saturation: once the
    margin between the top logit and the rest exceeds about 36.7 (``s < 2**-53``) the result is
    exactly ``-1.0``, so e.g. ``[1000, 0, ...]`` and ``[999, 0, ...]`` tie.  No float format
    can avoid this for a score bounded by 1; use :func:`msp_logit` (same ranking, no
    saturation) when such ties matter.
    """
    z = _as_logits(logits)
    return -1.0 / (1.0 + _others_over_max(z))


def msp_logit(logits: np.ndarray) -> np.ndarray:
    """Log-odds of the MSP, as an anomaly score: ``-log(MSP / (1 - MSP))``.

    ``= log sum_{k != argmax} exp(z_k) - max_k z_k`` (computed stably).  A strictly
    increasing function of :func:`msp`, so every rank-based metric (AUROC, AUPR, FPR@95) is the
    same in exact arithmetic, but it does not saturate in float64: ``[1000, 0, ...]`` and
    ``[999, 0, ...]`` give ``log(C-1) - 1000`` and ``log(C-1) - 999``.  Needs C >= 2.
    """
    z = _as_logits(logits)
    if z.shape[1] < 2:
        raise ValueError("msp_logit needs at least two classes")
    idx = np.arange(z.shape[0])
    m = z.max(axis=1)
    others = z.copy()
    others[idx, z.argmax(axis=1)] = -np.inf
    second = others.max(axis=1)
    # logsumexp over the non-argmax logits, shifted by the runner-up so it never underflows
    lse_others = second + np.log(np.exp(others - second[:, None]).sum(axis=1))
    return lse_others - m


def oe_xent(logits: np.ndarray) -> np.ndarray:
    """Outlier Exposure cross-entropy score: ``mean_k z_k - logsumexp(z)``.

    Hendrycks, Mazeika & Dietterich, "Deep Anomaly Detection with Outlier Exposure",
    ICLR 2019.  The cross-entropy from the softmax ``p`` to the uniform distribution ``u`` is
    ``H(u, p) = -(1/C) sum_k log p_k = logsumexp(z) - mean_k z_k >= log C``; it is LARGE for
    confident (in-distribution) inputs and minimal (``log C``) for uniform logits.  The OE loss
    minimises it on outliers, so the anomaly score is its negative,
    ``mean_k z_k - logsumexp(z) <= -log C``, maximal for uniform logits.
    """
    z = _as_logits(logits)
    return z.mean(axis=1) - logsumexp(z)


def energy(logits: np.ndarray, T: float = 1.0) -> np.ndarray:
    """Free energy: ``E(z) = -T logsumexp(z / T)``; higher energy = more anomalous.

    Liu, Wang, Owens & Li, "Energy-based Out-of-distribution Detection", NeurIPS 2020.
    ``T`` > 0 is the temperature (default 1).
    """
    if not (np.isfinite(T) and T > 0):
        raise ValueError(f"energy temperature T must be a positive finite number, got {T!r}")
    z = _as_logits(logits)
    return -T * logsumexp(z / T)


def max_logit(logits: np.ndarray) -> np.ndarray:
    """Maximum logit, as an anomaly score: ``-max_k z_k``.

    Hendrycks et al., "Scaling Out-of-Distribution Detection for Real-World Settings",
    ICML 2022.
    """
    z = _as_logits(logits)
    return -z.max(axis=1)


def entropy(logits: np.ndarray) -> np.ndarray:
    """Predictive entropy ``H(p) = -sum_k p_k log p_k`` of ``p = softmax(z)`` (nats).

    Computed as ``-sum_k exp(l_k) l_k`` with ``l = log_softmax(z)`` (terms with
    ``p_k`` = 0 contribute 0).  In ``[0, log C]``; higher = more anomalous.
    """
    lp = log_softmax(logits)
    p = np.exp(lp)
    return -np.where(p > 0.0, p * lp, 0.0).sum(axis=1)


def check_logits_labels(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validated (float64 logits (N, C), int64 class labels (N,)); ValueError otherwise."""
    z = np.asarray(logits)
    y = np.asarray(labels)
    if z.ndim != 2:
        raise ValueError(f"logits must have shape (N, C), got shape {z.shape}")
    if y.ndim != 1 or y.shape[0] != z.shape[0]:
        raise ValueError(f"labels must have shape ({z.shape[0]},), got shape {y.shape}")
    if z.shape[0] == 0:
        raise ValueError("logits are empty")
    if y.dtype.kind not in "iu":
        raise ValueError(f"labels must be integers, got dtype {y.dtype}")
    if y.min() < 0 or y.max() >= z.shape[1]:
        raise ValueError(f"labels must be class indices in [0, {z.shape[1]}); OOD (-1) not allowed")
    if z.dtype.kind not in "biuf":
        raise ValueError(f"logits must be real numbers, got dtype {z.dtype}")
    z = z.astype(np.float64)
    if not np.isfinite(z).all():
        raise ValueError("logits contain NaN or infinite values")
    return z, y.astype(np.int64)


SCORES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "msp": msp,
    "xent": oe_xent,
    "energy": energy,
    "maxlogit": max_logit,
    "entropy": entropy,
}
