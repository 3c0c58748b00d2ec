"""The training-loss registry: cross-entropy, Outlier Exposure, and whatever comes next.

A loss is ``fn(logits, labels, n_in, cfg) -> (total, ce, extra)``: ``logits`` (N, C) of one
forward pass over ``n_in`` in-distribution rows followed by the outlier rows (none unless
``oe.enabled``), ``labels`` (n_in,), the run's resolved config; it returns the loss to
minimise, the in-distribution cross-entropy and the extra term (0-d tensors; the run's log
records all three). ``train.loss`` names it; ``auto`` is ``oe`` when ``oe.enabled``, else ``ce``.
Register a new one with ``@register_loss("name")`` (``fastmix.register_loss``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from fastmix.registry import Registry
from fastmix.train.oe import oe_loss

__all__ = ["LOSSES", "LossFn", "loss_for", "register_loss"]

LossFn = Callable[
    [torch.Tensor, torch.Tensor, int, dict[str, Any]],
    tuple[torch.Tensor, torch.Tensor, torch.Tensor],
]
LOSSES: Registry[LossFn] = Registry("training loss")


def register_loss(name: str) -> Callable[[LossFn], LossFn]:
    """Decorator: register ``fn`` as ``train.loss = name``."""
    return LOSSES.decorator(name, lambda fn: fn)


@register_loss("ce")
def cross_entropy(logits, labels, n_in, cfg):
    """``CE(z_in, y)`` (with ``train.label_smoothing``); outlier rows, if any, are ignored."""
    ce = torch.nn.functional.cross_entropy(
        logits[:n_in].float(), labels, label_smoothing=cfg["train"]["label_smoothing"]
    )
    return ce, ce, ce.new_zeros(())


@register_loss("oe")
def outlier_exposure(logits, labels, n_in, cfg):
    """``CE(z_in, y) + oe.lambda * mean_out (logsumexp(z) - mean_k z_k)`` (fastmix.train.oe)."""
    return oe_loss(logits, labels, n_in, cfg["oe"]["lambda"], cfg["train"]["label_smoothing"])


def loss_for(cfg: dict[str, Any]) -> LossFn:
    """The registered loss ``train.loss`` names (``auto``: ``oe`` with ``oe.enabled``)."""
    name = cfg["train"].get("loss", "auto")
    if name == "auto":
        name = "oe" if cfg["oe"]["enabled"] else "ce"
    return LOSSES[name]
