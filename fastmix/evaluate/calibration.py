"""Calibration metrics and temperature scaling (pure numpy, float64).

References: Guo, Pleiss, Sun & Weinberger, "On Calibration of Modern Neural Networks",
ICML 2017 (ECE, MCE, reliability diagrams, temperature scaling); Hendrycks, Mazeika &
Dietterich, "Deep Anomaly Detection with Outlier Exposure", ICLR 2019 (RMS calibration error
with adaptive bins, calibration with OOD samples in the test set).

Inputs: ``confidences`` in [0, 1] (the max softmax probability of each prediction) and
``correct`` (bool or 0/1, whether the prediction was right), both 1-d and of equal length;
or ``logits`` (N, C) and integer ``labels`` (N,) in [0, C).  All results are fractions, not
percent.  Bad inputs raise ``ValueError``.
"""

from __future__ import annotations

import numpy as np

from fastmix.evaluate.scores import check_logits_labels, log_softmax

__all__ = [
    "brier",
    "calibration_report",
    "calibration_with_ood",
    "ece",
    "fit_temperature",
    "mce",
    "nll",
    "reliability_bins",
    "rms_calibration_error",
]

T_MIN = 0.05
T_MAX = 20.0


# ----------------------------------------------------------------------------- validation


def _conf_correct(confidences: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c = np.asarray(confidences)
    k = np.asarray(correct)
    if c.dtype.kind not in "biuf":
        raise ValueError(f"confidences must be real numbers, got dtype {c.dtype}")
    c = c.astype(np.float64, copy=False)
    if c.ndim != 1 or k.ndim != 1 or c.shape != k.shape:
        raise ValueError(
            f"confidences and correct must be 1-d of equal length, got {c.shape} and {k.shape}"
        )
    if c.size == 0:
        raise ValueError("confidences are empty")
    if np.isnan(c).any():
        raise ValueError("confidences contain NaN")
    if c.min() < 0.0 or c.max() > 1.0:
        raise ValueError(f"confidences must lie in [0, 1], got range [{c.min()}, {c.max()}]")
    if k.dtype.kind not in "biuf" or not np.isin(k, (0, 1)).all():
        raise ValueError("correct must be boolean or 0/1")
    return c, k.astype(np.float64)


def _check_temperature(temperature: float) -> float:
    t = float(temperature)
    if not (np.isfinite(t) and t > 0):
        raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")
    return t


# ----------------------------------------------------------------------------- binned errors


def reliability_bins(
    confidences: np.ndarray, correct: np.ndarray, n_bins: int = 15
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Equal-width confidence bins for reliability diagrams (Guo et al. 2017).

    Bin ``b`` (0-based) covers ``(b/n_bins, (b+1)/n_bins]`` - right-closed as in Guo et al. -
    and the first bin also includes confidence 0 exactly.  Returns
    ``(bin_lo, bin_hi, count, acc, conf)``, each of length ``n_bins``: the edges, the number of
    samples, the accuracy ``acc_b`` and the mean confidence ``conf_b`` of each bin (NaN for
    empty bins, which matplotlib skips).
    """
    c, k = _conf_correct(confidences, correct)
    if int(n_bins) < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    n_bins = int(n_bins)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # number of inner edges strictly below c -> index of the right-closed bin holding c
    idx = np.searchsorted(edges[1:-1], c, side="left")
    count = np.bincount(idx, minlength=n_bins).astype(np.int64)
    sum_k = np.bincount(idx, weights=k, minlength=n_bins)
    sum_c = np.bincount(idx, weights=c, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(count > 0, sum_k / count, np.nan)
        conf = np.where(count > 0, sum_c / count, np.nan)
    return edges[:-1].copy(), edges[1:].copy(), count, acc, conf


def ece(confidences: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> float:
    """Expected calibration error ``ECE = sum_b (n_b / N) |acc_b - conf_b|`` (Guo et al. 2017).

    Equal-width bins on [0, 1], right-closed ``(lo, hi]`` with 0 in the first bin (see
    :func:`reliability_bins`); empty bins contribute nothing.
    """
    _, _, count, acc, conf = reliability_bins(confidences, correct, n_bins)
    m = count > 0
    return float(np.sum(count[m] / count.sum() * np.abs(acc[m] - conf[m])))


def mce(confidences: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> float:
    """Maximum calibration error ``MCE = max_b |acc_b - conf_b|`` over NON-EMPTY bins
    (Guo et al. 2017), same bins as :func:`ece`."""
    _, _, count, acc, conf = reliability_bins(confidences, correct, n_bins)
    m = count > 0
    return float(np.max(np.abs(acc[m] - conf[m])))


def rms_calibration_error(
    confidences: np.ndarray, correct: np.ndarray, bin_size: int = 100
) -> float:
    """RMS calibration error with adaptive bins (Hendrycks et al., OE paper, ICLR 2019).

    Sort by confidence (stable sort, ties keep input order), cut into ``B = max(1, N //
    bin_size)`` consecutive bins of ``bin_size`` samples, the LAST bin also taking the
    ``N mod bin_size`` remaining samples, and return
    ``sqrt(sum_b (n_b / N) (acc_b - conf_b)^2)``.

    The binning follows the reference ``calib_err`` (hendrycks/outlier-exposure), but that
    loop runs over ``range(len(bins) - 1)`` and so silently drops the last bin (and fails
    for N < bin_size).  That is a bug: here every sample counts, so the result differs from
    the reference code wherever the last bin is miscalibrated.
    """
    c, k = _conf_correct(confidences, correct)
    if int(bin_size) < 1:
        raise ValueError(f"bin_size must be >= 1, got {bin_size}")
    bin_size = int(bin_size)
    order = np.argsort(c, kind="mergesort")
    c, k = c[order], k[order]
    n = c.size
    n_bins = max(1, n // bin_size)
    starts = np.arange(n_bins) * bin_size
    counts = np.diff(np.r_[starts, n])
    acc = np.add.reduceat(k, starts) / counts
    conf = np.add.reduceat(c, starts) / counts
    return float(np.sqrt(np.sum(counts / n * (acc - conf) ** 2)))


# ----------------------------------------------------------------------------- proper scores


def nll(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood ``-(1/N) sum_i log softmax(z_i)_{y_i}`` (nats)."""
    z, y = check_logits_labels(logits, labels)
    return float(-np.mean(log_softmax(z)[np.arange(y.size), y]))


def brier(logits: np.ndarray, labels: np.ndarray) -> float:
    """Multi-class Brier score ``(1/N) sum_i sum_k (p_ik - [k = y_i])^2``, ``p = softmax(z)``
    (Brier 1950; in [0, 2])."""
    z, y = check_logits_labels(logits, labels)
    p = np.exp(log_softmax(z))
    p[np.arange(y.size), y] -= 1.0
    return float(np.mean(np.sum(p * p, axis=1)))


# ----------------------------------------------------------------------------- temperature


def _nll_beta(z: np.ndarray, y: np.ndarray, beta: float) -> float:
    """NLL of softmax(beta * z) (beta = 1/T), via the accurate log_softmax (log1p form)."""
    return float(-np.mean(log_softmax(beta * z)[np.arange(y.size), y]))


def _nll_beta_derivs(z: np.ndarray, zy: np.ndarray, beta: float) -> tuple[float, float]:
    """First and second derivative of NLL(beta): mean(E_p[z] - z_y) and mean(Var_p[z])."""
    lp = log_softmax(beta * z)
    p = np.exp(lp)
    ez = np.sum(p * z, axis=1)
    ez2 = np.sum(p * z * z, axis=1)
    return float(np.mean(ez - zy)), float(np.mean(np.maximum(ez2 - ez * ez, 0.0)))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature ``T > 0`` minimising ``NLL(softmax(z / T))`` (Guo et al. 2017).

    ``NLL(beta z)`` is convex in ``beta = 1/T`` (log-sum-exp of a linear function minus a
    linear term), hence unimodal in ``log T``.  Deterministic pure-numpy search:

    1. golden-section search on ``log T`` over ``[log 0.05, log 20]`` to 1e-7;
    2. up to 20 safeguarded Newton steps on ``beta`` (exact first and second derivatives),
       each accepted only if it stays inside the bracket and does not increase the NLL.

    If the optimum lies outside [0.05, 20] the nearest bound is returned.  Tune it on a
    validation split held out from training, never on the test set.
    """
    z, y = check_logits_labels(logits, labels)
    zy = z[np.arange(y.size), y]

    def f(log_t: float) -> float:
        return _nll_beta(z, y, float(np.exp(-log_t)))

    lo, hi = np.log(T_MIN), np.log(T_MAX)
    g = (np.sqrt(5.0) - 1.0) / 2.0
    a, b = lo, hi
    x1, x2 = b - g * (b - a), a + g * (b - a)
    f1, f2 = f(x1), f(x2)
    while b - a > 1e-7:
        if f1 <= f2:
            b, x2, f2 = x2, x1, f1
            x1 = b - g * (b - a)
            f1 = f(x1)
        else:
            a, x1, f1 = x1, x2, f2
            x2 = a + g * (b - a)
            f2 = f(x2)
    log_t = (a + b) / 2.0
    best = f(log_t)
    # endpoints: the golden search never evaluates them exactly
    for edge in (lo, hi):
        fe = f(edge)
        if fe < best:
            log_t, best = edge, fe

    beta = float(np.exp(-log_t))
    beta_lo, beta_hi = 1.0 / T_MAX, 1.0 / T_MIN
    for _ in range(20):
        d1, d2 = _nll_beta_derivs(z, zy, beta)
        if d2 <= 0.0 or not np.isfinite(d1 / d2):
            break
        new = beta - d1 / d2
        if not (beta_lo <= new <= beta_hi):
            break
        f_new = _nll_beta(z, y, new)
        if f_new > best:
            break
        converged = abs(new - beta) <= 1e-12 * max(1.0, beta)
        beta, best = new, f_new
        if converged:
            break
    t = 1.0 / beta
    for bound in (T_MIN, T_MAX):  # report a bound exactly, not exp(log(bound)) rounded
        if abs(t - bound) <= 1e-12 * bound:
            t = bound
    return float(t)


# ----------------------------------------------------------------------------- reports


def _conf_and_correct_from_logits(
    z: np.ndarray, y: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    lp = log_softmax(z)
    conf = np.exp(lp.max(axis=1))
    correct = None if y is None else (lp.argmax(axis=1) == y)
    return conf, correct


def calibration_report(
    logits: np.ndarray,
    labels: np.ndarray,
    temperature: float = 1.0,
    n_bins: int = 15,
    bin_size: int = 100,
) -> dict[str, float]:
    """Calibration of ``softmax(z / temperature)`` on labelled in-distribution data.

    Returns ``{"ece", "mce", "rms", "nll", "brier", "accuracy", "temperature"}``: ECE and MCE
    with ``n_bins`` equal-width bins, RMS with adaptive bins of ``bin_size``, confidence =
    max softmax probability; all fractions.
    """
    t = _check_temperature(temperature)
    z, y = check_logits_labels(logits, labels)
    z = z / t
    conf, correct = _conf_and_correct_from_logits(z, y)
    return {
        "ece": ece(conf, correct, n_bins),
        "mce": mce(conf, correct, n_bins),
        "rms": rms_calibration_error(conf, correct, bin_size),
        "nll": nll(z, y),
        "brier": brier(z, y),
        "accuracy": float(np.mean(correct)),
        "temperature": t,
    }


def calibration_with_ood(
    id_logits: np.ndarray,
    id_labels: np.ndarray,
    ood_logits: np.ndarray,
    temperature: float = 1.0,
    n_bins: int = 15,
    bin_size: int = 100,
) -> dict[str, float]:
    """Calibration on a test set mixing ID and OOD samples (OE paper protocol, ICLR 2019).

    Every OOD sample counts as a WRONG prediction (``correct = 0``) whose confidence is its
    max softmax probability, so a calibrated model must give OOD inputs low confidence.
    ``ece``, ``mce`` and ``rms`` are computed over the union of ID and OOD samples.
    ``nll``, ``brier`` and ``accuracy`` need labels and are computed over the ID samples ONLY
    (they equal :func:`calibration_report`'s).  Same keys as :func:`calibration_report`.
    """
    t = _check_temperature(temperature)
    z, y = check_logits_labels(id_logits, id_labels)
    zo = np.asarray(ood_logits)
    if zo.ndim != 2 or zo.shape[1] != z.shape[1] or zo.shape[0] == 0:
        raise ValueError(
            f"ood_logits must have shape (M>0, {z.shape[1]}) like id_logits, got {zo.shape}"
        )
    z = z / t
    zo = zo.astype(np.float64) / t
    conf_in, correct_in = _conf_and_correct_from_logits(z, y)
    conf_out, _ = _conf_and_correct_from_logits(zo, None)
    conf = np.concatenate([conf_in, conf_out])
    correct = np.concatenate([correct_in, np.zeros(conf_out.size, dtype=bool)])
    return {
        "ece": ece(conf, correct, n_bins),
        "mce": mce(conf, correct, n_bins),
        "rms": rms_calibration_error(conf, correct, bin_size),
        "nll": nll(z, y),
        "brier": brier(z, y),
        "accuracy": float(np.mean(correct_in)),
        "temperature": t,
    }
