"""Virtual-logit Matching (Wang et al. 2022): feature residual off the principal space + energy.

Wang, Li, Feng & Zhang, "ViM: Out-Of-Distribution with Virtual-logit Matching", CVPR 2022.
With the head ``z = W f + b``, the origin ``u = -W^+ b`` (so ``z = W (f - u)``), the principal
space spanned by the top ``D`` eigenvectors of the (uncentred) second-moment matrix of the
training features ``f - u``, and ``P`` the projection on its orthogonal complement::

    alpha    = mean_train max_k z_k / mean_train ||P (f - u)||
    score(f) = alpha ||P (f - u)|| - logsumexp_k z_k

(the paper's ``-log softmax`` of the virtual logit, up to the monotone ``log(1 + exp(.))``
the official code drops as well). ``D``: the official code's rule, 1000 for ``F >= 2048``, 512
for ``F >= 768``, else ``F / 2`` (64 for this project's 128-dimensional ConvNet features).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastmix.evaluate.detectors.common import TrainingFeatures, as_features, head_logits
from fastmix.evaluate.scores import logsumexp

__all__ = ["FORMULA", "USES", "PAPER", "ViMFit", "fit", "hyperparameters", "principal_dim", "score"]

USES = ("features", "head")  # what it reads (fastmix.evaluate.detectors.registry.USES)
PAPER = "Wang, Li, Feng & Zhang, ViM: Out-Of-Distribution with Virtual-logit Matching, CVPR 2022"
FORMULA = (
    "alpha ||P (f - u)|| - logsumexp(z): u = -W^+ b, P projects off the top-D "
    "eigenvectors of the training features' second moment about u, alpha = mean max "
    "logit / mean residual norm on training (Wang et al. 2022)"
)


def principal_dim(n_features: int) -> int:
    """D of the official code: 1000 (F >= 2048), 512 (F >= 768), else F // 2."""
    if n_features >= 2048:
        return 1000
    if n_features >= 768:
        return 512
    return n_features // 2


@dataclass(frozen=True)
class ViMFit:
    """Origin ``u`` (F,), orthonormal basis of the residual space (F, F - D), ``alpha``, ``D``
    and the head ``weight`` (C, F), ``bias`` (C,)."""

    origin: np.ndarray
    residual_basis: np.ndarray
    alpha: float
    dim: int
    weight: np.ndarray
    bias: np.ndarray


def fit(train: TrainingFeatures, dim: int | None = None) -> ViMFit:
    """Origin, residual space and ``alpha`` from the training features (see module)."""
    f, w, b = train.features, train.weight, train.bias
    d = principal_dim(f.shape[1]) if dim is None else int(dim)
    if not 0 < d < f.shape[1]:
        raise ValueError(f"vim: principal dimension {d} must lie in (0, {f.shape[1]})")
    u = -np.linalg.pinv(w) @ b
    x = f - u
    second = x.T @ x / len(x)
    eigvals, eigvecs = np.linalg.eigh(second)
    basis = eigvecs[:, np.argsort(-eigvals)[d:]]
    residual = np.linalg.norm(x @ basis, axis=1)
    alpha = float(head_logits(f, w, b).max(axis=1).mean() / residual.mean())
    return ViMFit(u, basis, alpha, d, w, b)


def hyperparameters(fitted: ViMFit) -> dict[str, float | int | str]:
    """What results.json records: D, alpha and the rule that chose D."""
    return {
        "principal_dim": fitted.dim,
        "alpha": fitted.alpha,
        "principal_dim_rule": "official code: 1000 if F >= 2048, 512 if F >= 768, else F/2",
    }


def score(fitted: ViMFit, features: np.ndarray) -> np.ndarray:
    """``alpha ||P (f - u)|| - logsumexp(W f + b)``, float64 (N,); higher = more anomalous."""
    f = as_features(features, dim=len(fitted.origin))
    vlogit = fitted.alpha * np.linalg.norm((f - fitted.origin) @ fitted.residual_basis, axis=1)
    return vlogit - logsumexp(head_logits(f, fitted.weight, fitted.bias))
