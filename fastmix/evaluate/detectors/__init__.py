"""Post-hoc OOD detectors: anomaly scores (higher = more anomalous) beyond the logit scores.

========== ================================================== ===========================
name       anomaly score                                      paper
========== ================================================== ===========================
odin       ``-max softmax(z(x~) / T)``, perturbed input x~    Liang et al., ICLR 2018
mahalanobis ``min_c (f - mu_c)^T Sigma^+ (f - mu_c)``         Lee et al., NeurIPS 2018
knn        distance to the k-th nearest normalised feature    Sun et al., ICML 2022
vim        ``alpha ||P (f - u)|| - logsumexp(z)``             Wang et al., CVPR 2022
react      ``-logsumexp(W min(f, c) + b)``                    Sun et al., NeurIPS 2021
========== ================================================== ===========================

``f`` are penultimate features (``model.forward_features``), ``z = W f + b`` the head
(``model.get_classifier()``). Every detector is registered in :data:`DETECTORS`
(:mod:`fastmix.evaluate.detectors.registry`) by the module that implements it. The feature
detectors (:data:`FEATURE_DETECTORS`) are pure functions in one module each:
``fit(TrainingFeatures) -> fitted`` (training features, their labels and the head; nothing from
OOD data) and ``score(fitted, features)``; ODIN needs the model and input gradients
(:mod:`fastmix.evaluate.detectors.odin`). Formula, paper and the papers' default
hyperparameters are in each module's docstring; each declares what it uses (``USES``) and is
registered below (ODIN registers itself). A new detector is one module that calls
``fastmix.register_detector``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from fastmix.evaluate.detectors import (
    knn,
    mahalanobis,
    odin,  # noqa: F401 (registers itself, first)
    react,
    vim,
)
from fastmix.evaluate.detectors.common import TrainingFeatures, training_features
from fastmix.evaluate.detectors.registry import DETECTORS, Detector, register_detector

__all__ = [
    "DETECTORS",
    "DETECTOR_TEXT",
    "FEATURE_DETECTORS",
    "Detector",
    "TrainingFeatures",
    "register_detector",
    "training_features",
]


class _View(Mapping[str, Any]):
    """A live, filtered view of :data:`DETECTORS` (plugins registered later show up too)."""

    def __init__(self, keep: Callable[[Detector], bool], value: Callable[[Detector], Any]) -> None:
        self._keep, self._value = keep, value

    def _names(self) -> list[str]:
        return [n for n, d in DETECTORS.items() if self._keep(d)]

    def __getitem__(self, name: str) -> Any:
        if name not in self._names():
            raise KeyError(name)
        return self._value(DETECTORS[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())


for _module in (mahalanobis, knn, vim, react):  # each declares PAPER, FORMULA, USES, fit, score
    register_detector(
        _module.__name__.rsplit(".", 1)[1],
        paper=_module.PAPER,
        formula=_module.FORMULA,
        fit=_module.fit,
        score=_module.score,
        uses=_module.USES,
        hyperparameters=_module.hyperparameters,
    )

FEATURE_DETECTORS: Mapping[str, Detector] = _View(lambda d: d.fit is not None, lambda d: d)
DETECTOR_TEXT: Mapping[str, str] = _View(lambda d: True, lambda d: d.formula)
