"""OOD detection metrics as pure numpy functions.

Conventions (see also ``docs/CONVENTIONS.md``):

* Inputs are two 1-d arrays of ANOMALY scores (higher = more anomalous): ``id_scores`` for the
  in-distribution test set and ``ood_scores`` for the out-of-distribution set.
* OOD is the POSITIVE class.  AUROC, AUPR-Out and FPR@95TPR are computed with label 1 = OOD
  and the score as given; AUPR-In with label 1 = ID and the score negated.
* All results are fractions in [0, 1] (multiply by 100 for the usual percent tables).
* Thresholds sit at the distinct score values, exactly as scikit-learn's ``roc_curve`` /
  ``precision_recall_curve`` place them, so tied scores always fall on the same side.
* Bad inputs (empty arrays, NaN scores, wrong shapes) raise ``ValueError``.  Infinite scores
  are allowed: every metric here depends on the order of the scores only.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fastmix.evaluate.scores import SCORES, check_logits_labels

__all__ = [
    "METRIC_NAMES",
    "aupr_in",
    "aupr_out",
    "auroc",
    "average_precision",
    "error_detection_auroc",
    "fpr_at_tpr",
    "ood_metrics",
    "ood_metrics_draws",
]

METRIC_NAMES: tuple[str, ...] = ("auroc", "aupr_in", "aupr_out", "fpr95")


def _as_scores(x: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be a real numeric array, got dtype {a.dtype}")
    a = a.astype(np.float64, copy=False)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-d, got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} is empty; a detection metric needs both ID and OOD samples")
    if np.isnan(a).any():
        raise ValueError(f"{name} contains {int(np.isnan(a).sum())} NaN score(s)")
    return a


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x`` in ascending order, ties given the mean of their ranks."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    # start index of each run of equal values in sorted order
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], xs.size]  # exclusive
    mean_rank = (starts + 1 + ends) / 2.0  # mean of starts+1 .. ends
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def auroc(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """Area under the ROC curve, OOD positive.

    ``AUROC = P(s_ood > s_id) + 0.5 P(s_ood = s_id)``, computed through the Mann-Whitney U
    statistic with average ranks over the pooled scores (O(N log N)):
    ``U = sum_{ood} rank - n_ood (n_ood + 1) / 2``, ``AUROC = U / (n_id n_ood)``.
    Equals ``sklearn.metrics.roc_auc_score(y, s)`` with ``y = 1`` for OOD, ties counted half.
    """
    s_in = _as_scores(id_scores, "id_scores")
    s_out = _as_scores(ood_scores, "ood_scores")
    ranks = _average_ranks(np.concatenate([s_in, s_out]))
    n_in, n_out = s_in.size, s_out.size
    u = ranks[n_in:].sum() - n_out * (n_out + 1) / 2.0
    return float(u / (n_in * n_out))


def _curve(neg: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative (true positives, false positives) at each distinct threshold, scanned from
    the highest score down; entry ``i`` counts samples with score >= the i-th distinct value."""
    s = np.concatenate([pos, neg])
    y = np.concatenate([np.ones(pos.size, dtype=np.int64), np.zeros(neg.size, dtype=np.int64)])
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    # last index of each run of equal scores
    last = np.flatnonzero(np.r_[s[1:] != s[:-1], True])
    tp = np.cumsum(y)[last]
    fp = (last + 1) - tp
    return tp, fp


def average_precision(neg_scores: np.ndarray, pos_scores: np.ndarray) -> float:
    """Average precision of ``pos_scores`` (label 1) against ``neg_scores`` (label 0).

    Step-wise definition of scikit-learn's ``average_precision_score``: with thresholds at the
    distinct score values, ``AP = sum_t (R_t - R_{t-1}) P_t`` where ``P_t`` and ``R_t`` are the
    precision and recall when everything with score >= t is called positive, ``R_0 = 0``.
    """
    neg = _as_scores(neg_scores, "negative scores")
    pos = _as_scores(pos_scores, "positive scores")
    tp, fp = _curve(neg, pos)
    precision = tp / (tp + fp)
    recall = tp / pos.size
    d_recall = np.diff(np.r_[0.0, recall])
    return float(np.sum(d_recall * precision))


def aupr_out(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """AUPR-Out: average precision with OOD as the positive class and the anomaly score as is.

    Equals ``sklearn.metrics.average_precision_score(y, s)`` with ``y = 1`` for OOD.  Its
    chance level is the OOD fraction ``n_ood / (n_id + n_ood)``.
    """
    s_in = _as_scores(id_scores, "id_scores")
    s_out = _as_scores(ood_scores, "ood_scores")
    return average_precision(s_in, s_out)


def aupr_in(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """AUPR-In: average precision with ID as the positive class and the score negated.

    Equals ``sklearn.metrics.average_precision_score(y, -s)`` with ``y = 1`` for ID.  Its
    chance level is the ID fraction ``n_id / (n_id + n_ood)``.
    """
    s_in = _as_scores(id_scores, "id_scores")
    s_out = _as_scores(ood_scores, "ood_scores")
    return average_precision(-s_out, -s_in)


def fpr_at_tpr(id_scores: np.ndarray, ood_scores: np.ndarray, tpr: float = 0.95) -> float:
    """False-positive rate on ID at the first threshold whose TPR on OOD reaches ``tpr``.

    Scanning thresholds ``t`` at the distinct score values from the highest down, flag
    ``s >= t``; return ``FPR(t) = #{id >= t} / n_id`` for the first (highest) ``t`` with
    ``TPR(t) = #{ood >= t} / n_ood >= tpr``.  This is the rule of OpenOOD v1.5 and
    pytorch-ood (``fpr[argmax(tpr_curve >= 0.95)]`` on the full ROC curve).

    Difference to the Outlier Exposure repository (``fpr_and_fdr_at_recall``): it takes the
    threshold whose recall is CLOSEST to ``tpr`` (from either side), so it may pick a threshold
    with recall just below ``tpr`` (lower FPR than here); its scan also runs from the lowest
    threshold up, so among thresholds with the same recall it can pick a lower one (higher
    FPR).  Numbers are similar, not identical; this module always uses the rule above.

    The comparison ``TPR >= tpr`` allows a relative slack of 1e-12 so that e.g. 19/20 counts
    as reaching 0.95 regardless of floating-point rounding.
    """
    if not (0.0 < tpr <= 1.0):
        raise ValueError(f"tpr must be in (0, 1], got {tpr!r}")
    s_in = _as_scores(id_scores, "id_scores")
    s_out = _as_scores(ood_scores, "ood_scores")
    tp, fp = _curve(s_in, s_out)
    need = tpr * s_out.size * (1.0 - 1e-12)
    i = int(np.argmax(tp >= need))  # the last threshold has tp = n_ood, so one always exists
    return float(fp[i] / s_in.size)


def ood_metrics(id_scores: np.ndarray, ood_scores: np.ndarray) -> dict[str, float]:
    """All detection metrics, OOD positive, as fractions in [0, 1].

    Returns ``{"auroc", "aupr_in", "aupr_out", "fpr95"}`` (FPR at 95% TPR, see
    :func:`fpr_at_tpr`).
    """
    s_in = _as_scores(id_scores, "id_scores")
    s_out = _as_scores(ood_scores, "ood_scores")
    return {
        "auroc": auroc(s_in, s_out),
        "aupr_in": aupr_in(s_in, s_out),
        "aupr_out": aupr_out(s_in, s_out),
        "fpr95": fpr_at_tpr(s_in, s_out, 0.95),
    }


def ood_metrics_draws(
    id_scores: np.ndarray,
    ood_scores: np.ndarray,
    n_ood: int = 2000,
    n_draws: int = 10,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Outlier Exposure test protocol: mean and std of :func:`ood_metrics` over random draws.

    Hendrycks et al., ICLR 2019: each draw compares ALL ID scores with a random subset of
    ``n_ood`` OOD scores drawn without replacement (``numpy.random.default_rng(seed)``); if
    there are at most ``n_ood`` OOD scores, every draw uses all of them (and the std is 0).
    The AUPR values therefore refer to an OOD:ID ratio of ``n_ood : n_id`` (1:5 on MNIST).

    Returns ``{"mean": {metric: value}, "std": {metric: value}}`` with the metric names of
    :func:`ood_metrics`; std is the population std (``ddof=0``) over the ``n_draws`` draws.
    """
    s_in = _as_scores(id_scores, "id_scores")
    s_out = _as_scores(ood_scores, "ood_scores")
    if int(n_ood) < 1 or int(n_draws) < 1:
        raise ValueError(f"n_ood and n_draws must be >= 1, got n_ood={n_ood}, n_draws={n_draws}")
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(int(n_draws)):
        if s_out.size > n_ood:
            pick = np.sort(rng.choice(s_out.size, size=int(n_ood), replace=False))
            sub = s_out[pick]
        else:
            sub = s_out
        rows.append(ood_metrics(s_in, sub))
    table = {k: np.array([r[k] for r in rows]) for k in METRIC_NAMES}
    mean: dict[str, float] = {}
    std: dict[str, float] = {}
    for k, v in table.items():
        if np.all(v == v[0]):  # identical draws: exact value and std 0 (no rounding residue)
            mean[k], std[k] = float(v[0]), 0.0
        else:
            mean[k], std[k] = float(v.mean()), float(v.std())
    return {"mean": mean, "std": std}


def error_detection_auroc(
    logits: np.ndarray,
    labels: np.ndarray,
    score: str | Callable[[np.ndarray], np.ndarray] = "msp",
) -> float:
    """AUROC for detecting misclassified in-distribution samples (Hendrycks & Gimpel 2017).

    Wrong predictions (``argmax_k z_k != label``) are the positive class, correct ones the
    negative class; the anomaly score ``score`` (a name in
    :data:`fastmix.evaluate.scores.SCORES` or a callable) ranks them.  Raises ValueError when
    there are no wrong or no correct predictions (the AUROC is undefined then).
    """
    fn = SCORES.get(score) if isinstance(score, str) else score
    if fn is None:
        raise ValueError(f"unknown score {score!r}; valid: {sorted(SCORES)}")
    z, y = check_logits_labels(logits, labels)
    s = np.asarray(fn(z), dtype=np.float64)
    wrong = z.argmax(axis=1) != y
    if not wrong.any() or wrong.all():
        raise ValueError(
            f"error detection needs both correct and wrong predictions, got {int(wrong.sum())} "
            f"wrong out of {wrong.size}"
        )
    return auroc(s[~wrong], s[wrong])
