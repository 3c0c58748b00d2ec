"""Bring your own detector: cosine similarity to the class means of the training features,
``eval.scores = [..., "cosine"]``.

    fastmix run --plugin examples/my_detector.py --set 'eval.scores=["msp", "cosine"]'
    (or ``eval.scores`` in a recipe)

With ``u = f / ||f||`` and ``m_c`` the normalised mean of class ``c``'s normalised training
features::

    score(f) = -max_c  u . m_c          (higher = more anomalous)

A detector is two pure functions and one ``register_detector`` call that says what it uses
(the penultimate ``features``; add ``"head"`` to receive the classifier's weights) and what
it is fit on. ``fit`` gets a ``fastmix.TrainingFeatures`` (training features, labels, head),
``score`` the features of one set. The report files it under what it uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import fastmix


def _unit(f: np.ndarray) -> np.ndarray:
    return f / (np.linalg.norm(f, axis=1, keepdims=True) + 1e-12)


@dataclass(frozen=True)
class CosineFit:
    means: np.ndarray  # (C, F), unit rows


def fit(train: fastmix.TrainingFeatures) -> CosineFit:
    u = _unit(train.features)
    means = np.stack([u[train.labels == c].mean(axis=0) for c in np.unique(train.labels)])
    return CosineFit(_unit(means))


def score(fitted: CosineFit, features: np.ndarray) -> np.ndarray:
    return -(_unit(np.asarray(features, dtype=np.float64)) @ fitted.means.T).max(axis=1)


fastmix.register_detector(
    "cosine",
    paper="fastmix example: cosine similarity to the class means (not a published method)",
    formula="-max_c (f / ||f||) . m_c, m_c the normalised class means of the training features",
    fit=fit,
    score=score,
    uses=("features",),
    fit_on="penultimate features of the training subset",
    hyperparameters=lambda fitted: {"classes": len(fitted.means)},
)
