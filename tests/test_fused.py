"""The fused LeNets (``fastmix.train.fused``) stay independent models: G SGD steps on the
fused network give each model the weights, and the logits, of G separate SGD steps (fp32, to
float rounding: the grouped convolution and the batched matmul sum in another order)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fastmix.train.fused import FusedLeNet
from fastmix.train.models import LeNet

G, WIDTH, BATCH, STEPS = 3, 8, 32, 4


def _sgd(groups):
    return torch.optim.SGD(groups, lr=0.05, momentum=0.9, nesterov=True)


def _separate_groups(model: LeNet) -> list[dict]:
    """A run's parameter groups (``fastmix.train.run.Run``): decay on weights only."""
    ps = list(model.parameters())
    return [
        {"params": [p for p in ps if p.ndim > 1], "weight_decay": 5e-4},
        {"params": [p for p in ps if p.ndim <= 1], "weight_decay": 0.0},
    ]


@pytest.fixture()
def batches():
    g = torch.Generator().manual_seed(1)
    xs = torch.rand(STEPS, BATCH, G, 28, 28, generator=g)  # model g reads channel g
    ys = torch.randint(0, 10, (STEPS, G, BATCH), generator=g)
    return xs, ys


def test_fused_training_gives_each_model_its_separate_weights(batches):
    xs, ys = batches
    torch.manual_seed(0)
    models = [LeNet(WIDTH, dropout=0.0) for _ in range(G)]
    fused = FusedLeNet(models)
    initial = [{k: v.clone() for k, v in m.state_dict().items()} for m in models]
    opts = [_sgd(_separate_groups(m)) for m in models]
    fused_opt = _sgd(fused.decay_groups(5e-4))
    for x, y in zip(xs, ys, strict=True):
        for g, (m, opt) in enumerate(zip(models, opts, strict=True)):
            loss = F.cross_entropy(m(x[:, g : g + 1]), y[g])
            opt.zero_grad()
            loss.backward()
            opt.step()
        logits = fused(x)
        loss = sum(F.cross_entropy(logits[g], y[g]) for g in range(G))
        fused_opt.zero_grad()
        loss.backward()
        fused_opt.step()
    for g, m in enumerate(models):
        assert not torch.allclose(m.fc1.weight, initial[g]["fc1.weight"])  # it trained
        for name, tensor in fused.state_of(g).items():
            ref = m.state_dict()[name]
            assert tensor.shape == ref.shape, name
            torch.testing.assert_close(tensor.detach(), ref, rtol=1e-4, atol=1e-5)
    x = xs[0]
    with torch.no_grad():
        out = fused(x)
        for g, m in enumerate(models):
            torch.testing.assert_close(out[g], m(x[:, g : g + 1]), rtol=1e-4, atol=1e-4)


def test_a_fused_model_differs_when_one_model_is_changed(batches):
    """The comparison above can fail: model 1's weights perturbed, its logits move and the
    others' do not."""
    xs, _ = batches
    torch.manual_seed(0)
    models = [LeNet(WIDTH, dropout=0.0) for _ in range(G)]
    before = FusedLeNet(models)(xs[0]).detach()
    with torch.no_grad():
        models[1].conv2.weight.add_(0.01)
    after = FusedLeNet(models)(xs[0]).detach()
    assert not torch.allclose(before[1], after[1], atol=1e-4)
    torch.testing.assert_close(before[0], after[0])
    torch.testing.assert_close(before[2], after[2])
