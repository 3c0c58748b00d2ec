"""Outlier Exposure loss (Hendrycks, Mazeika & Dietterich, "Deep Anomaly Detection with Outlier
Exposure", ICLR 2019).

One forward pass over ``concat(in_batch, out_batch)``; with logits ``z``:

    L = CE(z_in, y) + lambda * mean_{x in out} ( logsumexp(z(x)) - mean_k z_k(x) )

The second term is the cross-entropy from the softmax to the uniform distribution over the K
classes (up to the constant log K): it is 0 exactly when the outlier logits are all equal.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def uniform_cross_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Per-sample ``logsumexp(z) - mean_k z_k`` (>= 0 up to log K; minimal at uniform)."""
    return torch.logsumexp(logits, dim=1) - logits.mean(dim=1)


def oe_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    n_in: int,
    lam: float = 0.5,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(total, in-distribution CE, outlier term) for logits of ``n_in`` ID rows then outliers."""
    z = logits.float()
    ce = F.cross_entropy(z[:n_in], labels, label_smoothing=label_smoothing)
    if z.shape[0] == n_in:
        zero = z.new_zeros(())
        return ce, ce, zero
    out_term = uniform_cross_entropy(z[n_in:]).mean()
    return ce + lam * out_term, ce, out_term
