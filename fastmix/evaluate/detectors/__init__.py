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
(``model.get_classifier()``). The feature detectors (:data:`FEATURE_DETECTORS`) are pure
functions in one module each: ``fit(TrainingFeatures) -> fitted`` (training features, their
labels and the head; nothing from OOD data) and ``score(fitted, features)``; ODIN needs the model
and input gradients (:mod:`fastmix.evaluate.detectors.odin`). Formula, paper and the papers'
default hyperparameters are in each module's docstring.
"""

from __future__ import annotations

from types import ModuleType

from fastmix.evaluate.detectors import knn, mahalanobis, odin, react, vim
from fastmix.evaluate.detectors.common import TrainingFeatures, training_features

__all__ = [
    "DETECTORS",
    "DETECTOR_TEXT",
    "FEATURE_DETECTORS",
    "TrainingFeatures",
    "training_features",
]

FEATURE_DETECTORS: dict[str, ModuleType] = {
    "mahalanobis": mahalanobis,
    "knn": knn,
    "vim": vim,
    "react": react,
}
DETECTORS: dict[str, ModuleType] = {"odin": odin, **FEATURE_DETECTORS}
DETECTOR_TEXT: dict[str, str] = {name: m.FORMULA for name, m in DETECTORS.items()}
