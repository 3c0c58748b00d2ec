"""The Outlier Exposure loss against a hand computation on fixed logits."""

from __future__ import annotations

import math

import pytest
import torch

from fastmix.train.oe import oe_loss, uniform_cross_entropy


def test_oe_loss_by_hand():
    logits = torch.tensor(
        [
            [2.0, 0.0, 0.0],  # ID, label 0
            [0.0, 1.0, 3.0],  # ID, label 2
            [1.0, 1.0, 1.0],  # outlier, already uniform
            [3.0, 0.0, 0.0],
        ]
    )  # outlier, confident
    labels = torch.tensor([0, 2])

    def ce(z, y):
        return math.log(sum(math.exp(v) for v in z)) - z[y]

    def to_uniform(z):
        return math.log(sum(math.exp(v) for v in z)) - sum(z) / len(z)

    rows = logits.tolist()
    ce_hand = (ce(rows[0], 0) + ce(rows[1], 2)) / 2
    out_hand = (to_uniform(rows[2]) + to_uniform(rows[3])) / 2
    total, ce_t, out_t = oe_loss(logits, labels, n_in=2, lam=0.5)
    assert ce_t.item() == pytest.approx(ce_hand, rel=1e-6)
    assert out_t.item() == pytest.approx(out_hand, rel=1e-6)
    assert total.item() == pytest.approx(ce_hand + 0.5 * out_hand, rel=1e-6)
    # a uniform outlier costs exactly log K, the minimum of the term
    assert to_uniform(rows[2]) == pytest.approx(math.log(3))


def test_uniform_term_equals_cross_entropy_to_uniform_distribution():
    z = torch.randn(5, 10, dtype=torch.float64)
    expected = -(torch.log_softmax(z, 1)).mean(1)  # CE(u, softmax) = -1/K sum_k log p_k
    torch.testing.assert_close(uniform_cross_entropy(z), expected)


def test_without_outliers_the_loss_is_plain_cross_entropy():
    z = torch.randn(4, 10)
    y = torch.tensor([1, 2, 3, 4])
    total, ce, out = oe_loss(z, y, n_in=4)
    torch.testing.assert_close(total, torch.nn.functional.cross_entropy(z, y))
    assert out.item() == 0.0


def test_gradient_pushes_outliers_towards_uniform():
    z = torch.tensor([[0.0, 0.0], [4.0, 0.0]], requires_grad=True)
    total, _, _ = oe_loss(z, torch.tensor([0]), n_in=1, lam=1.0)
    total.backward()
    g = z.grad[1]
    assert g[0] > 0 > g[1]  # descending lowers the confident logit and raises the other
