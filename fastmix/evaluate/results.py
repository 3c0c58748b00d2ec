"""What ``fastmix eval`` writes into a run directory, and how to read it back.

::

    <run>/results.json   every metric (schema below), written atomically
    <run>/logits.npz     "logits/<set>" float32 (N, C) and "labels/<set>" int64 (N,) for every
                         evaluated set (:func:`load_logits`)
    <run>/features.npz   "features/<set>" float16 (N, F): penultimate features (the input of
                         the classifier head) of the training subset ("train"), validation,
                         test and every OOD set, with "labels/<set>" and "indices/train" (the
                         training-set rows of the subset); absent with ``eval.features = false``
                         (:func:`load_features`)

results.json (metrics are fractions; ``None`` where undefined)::

    format, run, variant, seed (training), which (best|last), eval_seed, seconds
    config         {augment, oe, model} sections of the run's config
    convention     OOD positive, FPR95 rule, score formulas, seen-in-training rule, ...
    inference      {device, precision, channels_last, batch_size, images, seconds}
    data           {set: {count, family, role, sha256}} for every evaluated set
    clean          {test_accuracy, val_accuracy, n_test, n_val, test_set, val_set}
    mnist_c        {available, origin (official|regenerated|mixed), origin_label,
                    generator_version, seed, per_corruption {name: acc}, mean (plain mean),
                    drop (clean - mean), n_corruptions, complete, missing [names]}
    ood            {set: {family, count, seen_in_training, seen_reason, n_ood, n_draws, n_id,
                    full {score: {auroc, aupr_in, aupr_out, fpr95}},
                    draws {score: {mean {..}, std {..}}},
                    subsets {score: {n_id, n_ood}} (only scores computed on subsets: odin)}}
    ood_unavailable {set: reason}
    detectors      {name: {paper, fit_on, hyperparameters {..}, seconds} or {paper,
                   unavailable: reason}} for the post-hoc detectors in eval.scores (absent when
                   there are none; the feature detectors are unavailable without the training
                   set's beton)
    features       {file (None with eval.features = false), dtype, dim, sets, train_set,
                    n_train, subset_seed, seconds_train_subset} (absent when not computed)
    error_detection {set, positive, n_wrong, auroc {score: value}} (the logit scores)
    calibration    {temperature, fitted_on, evaluated_on, test {before, after}, val {..},
                    with_ood {set: {seen_in_training, n_ood, before, after}},
                    with_ood_held_out_mean {sets, before {ece, mce, rms}, after {..}}}
                   (before/after = fastmix.evaluate.calibration.calibration_report keys)
    summary        {test_accuracy, mnist_c_mean, score, ood_auroc_held_out_mean,
                    ood_held_out_sets, ece_before, ece_after, temperature}
    notes          [text]: leaks and overlaps (S&P vs impulse_noise, OE source), provenance

Conventions (``results["convention"]``):

* OOD is the POSITIVE class; anomaly scores are higher = more anomalous: the logit scores
  (:mod:`fastmix.evaluate.scores`) are computed in float64 from the float32 logits, the
  post-hoc detectors (:mod:`fastmix.evaluate.detectors`) in float64 from the stored float16
  features (ODIN from the model).
* OOD detection per set and score: (a) the full OOD set against the whole ID test set and
  (b) the Outlier Exposure protocol (Hendrycks et al., ICLR 2019): mean and std over
  ``eval.n_draws`` draws of ``eval.n_ood`` OOD samples against all ID samples.
* ``seen_in_training`` is true iff the model was trained with Outlier Exposure and the OOD set
  has the same distribution family (``manifest.json``) as the OE source beton (``oe.source``).
  The seed report used Fashion-MNIST both as the OE source and as a test set: those numbers are
  not held-out OOD detection.
* Calibration: temperature ``T`` fitted on the validation split (never on test; Guo et al.
  2017), ECE/MCE (15 equal-width bins), RMS (adaptive bins of 100), NLL and Brier on the test
  set before and after scaling.  Calibration with OOD (OE paper protocol: OOD samples count as
  wrong predictions) is computed PER OOD SET, with ``eval.n_ood`` OOD samples drawn once
  (seeded) against the whole test set; ``held_out_mean`` averages ECE/MCE/RMS over the held-out
  sets only (a union would be dominated by the largest sets, and seen sets would flatter OE
  models).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from fastmix.errors import DataError
from fastmix.train.run_dir import FEATURES_FILE, LOGITS_FILE, RESULTS_FILE

__all__ = [
    "CONVENTION",
    "RESULTS_FORMAT",
    "SCORE_TEXT",
    "jsonable",
    "load_features",
    "load_logits",
    "load_results",
]

RESULTS_FORMAT = 1

SCORE_TEXT = {
    "msp": "-max_k softmax(z)_k (Hendrycks & Gimpel 2017)",
    "xent": "mean_k z_k - logsumexp(z) (Outlier Exposure cross-entropy to uniform, 2019)",
    "energy": "-logsumexp(z), T = 1 (Liu et al. 2020)",
    "maxlogit": "-max_k z_k (Hendrycks et al. 2022)",
    "entropy": "-sum_k p_k log p_k (predictive entropy)",
}

CONVENTION: dict[str, Any] = {
    "positive_class": "ood",
    "text": "OOD is the positive class; anomaly scores are higher = more anomalous, computed in "
    "float64 from float32 logits; all metrics are fractions in [0, 1]",
    "text_scores": "anomaly scores are higher = more anomalous, computed in float64 from "
    "float32 logits",
    "fpr95": "FPR on ID at the first (highest) threshold whose TPR on OOD reaches 0.95 "
    "(OpenOOD v1.5 / pytorch-ood rule; the OE repository takes the threshold whose "
    "recall is closest to 0.95: similar, not identical)",
    "aupr_in": "average precision with ID positive and the score negated",
    "aupr_out": "average precision with OOD positive",
    "full": "the whole OOD set against the whole ID test set",
    "draws": "Outlier Exposure protocol: mean and population std over n_draws draws of n_ood "
    "OOD samples (without replacement) against all ID test samples",
    "scores": SCORE_TEXT,
    "seen_in_training": "true iff the model used Outlier Exposure and the OOD set's family "
    "(manifest.json) equals the family of the OE source beton",
    "calibration": "T fitted on the validation split by NLL; ECE/MCE with 15 equal-width bins, "
    "RMS with adaptive bins of 100; with OOD: per OOD set, n_ood OOD samples "
    "(drawn once, seeded) counted as wrong predictions",
}


def _f(x: Any) -> float | None:
    """A JSON-safe float (None for NaN / inf)."""
    v = float(x)
    return v if np.isfinite(v) else None


def jsonable(obj: Any) -> Any:
    """``obj`` with numpy scalars as Python numbers, tuples as lists, NaN / inf as None."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return _f(obj)
    return obj


def load_results(run_dir: str | os.PathLike) -> dict[str, Any]:
    """``<run>/results.json``; DataError if missing or unreadable."""
    path = Path(run_dir) / RESULTS_FILE
    try:
        res = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: not found; run `fastmix eval {run_dir}` first") from None
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: unreadable ({e})") from None
    if not isinstance(res, dict) or res.get("format") != RESULTS_FORMAT:
        raise DataError(f"{path}: not a fastmix results file (format {RESULTS_FORMAT})")
    return res


def _load_npz(path: Path, run_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise DataError(f"{path}: not found; run `fastmix eval {run_dir}` first")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: unreadable ({e})") from None


def load_logits(run_dir: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``<run>/logits.npz`` as ``set name -> (logits float32 (N, C), labels int64 (N,))``."""
    path = Path(run_dir) / LOGITS_FILE
    arrays = _load_npz(path, run_dir)
    names = [k[len("logits/") :] for k in arrays if k.startswith("logits/")]
    try:
        return {n: (arrays[f"logits/{n}"], arrays[f"labels/{n}"]) for n in names}
    except KeyError as e:
        raise DataError(f"{path}: no {e.args[0]} beside its logits") from None


def load_features(run_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """``<run>/features.npz`` as a dict of its arrays: ``features/<set>`` float16 (N, F),
    ``labels/<set>`` int64 (N,) and ``indices/train`` int64 (the training-set rows)."""
    return _load_npz(Path(run_dir) / FEATURES_FILE, run_dir)
