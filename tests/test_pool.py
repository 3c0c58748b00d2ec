"""The LeNets' 2x2 max-pool kernels against ``F.max_pool2d``: values and gradients (bf16 and
float32), ties, signed zeros, NaN and the fallback path."""

import pytest
import torch
import torch.nn.functional as F

from fastmix.train.pool import fast_pool_applies, max_pool2x2


def _cl(t: torch.Tensor, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    return t.to(dtype).contiguous(memory_format=torch.channels_last)


def _both(x: torch.Tensor, g: torch.Tensor):
    """Output and input gradient of the kernel and of F.max_pool2d on the same input."""
    out = []
    for fn in (max_pool2x2, lambda t: F.max_pool2d(t, 2)):
        xi = x.detach().clone().requires_grad_()
        y = fn(xi)
        y.backward(g)
        out.append((y.detach(), xi.grad))
    return out


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("shape", [(5, 16, 24, 24), (3, 32, 8, 8), (2, 1, 4, 6)])
def test_equals_max_pool2d_with_many_ties(shape, dtype):
    gen = torch.Generator().manual_seed(1)
    # values from a handful of levels: most windows hold ties
    x = _cl(torch.randint(-3, 4, shape, generator=gen).float() * 0.5, dtype)
    g = _cl(torch.randn(shape[0], shape[1], shape[2] // 2, shape[3] // 2, generator=gen), dtype)
    assert fast_pool_applies(x)
    (y, dx), (y_ref, dx_ref) = _both(x, g)
    assert torch.equal(y, y_ref)
    assert torch.equal(dx, dx_ref)
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert dx.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_tie_gradient_goes_to_first_in_row_major_order(dtype):
    x = torch.tensor([[[1.0, 2.0], [2.0, 2.0]], [[-0.0, 0.0], [-1.0, 0.0]]]).unsqueeze(0)
    x = _cl(x, dtype)
    g = _cl(torch.tensor([3.0, 5.0]).reshape(1, 2, 1, 1), dtype)
    (y, dx), (y_ref, dx_ref) = _both(x, g)
    # channel 0: the three 2.0 tie, (0, 1) comes first; channel 1: -0.0 == +0.0, (0, 0) first
    expect = torch.tensor([[[0.0, 3.0], [0.0, 0.0]], [[5.0, 0.0], [0.0, 0.0]]]).unsqueeze(0)
    assert torch.equal(dx.float(), expect)
    assert torch.equal(dx, dx_ref) and torch.equal(y, y_ref)
    assert torch.signbit(y[0, 1, 0, 0])  # the first zero's sign is kept, as F.max_pool2d does


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_nan_and_infinities(dtype):
    nan, inf = float("nan"), float("inf")
    x = _cl(torch.tensor([[[1.0, nan], [5.0, 2.0]], [[-inf, -inf], [-7.0, 9.0]]])[None], dtype)
    x2 = _cl(torch.tensor([[[inf, 1.0], [3.0, inf]]]).unsqueeze(0), dtype)
    y = max_pool2x2(x)
    assert torch.isnan(y[0, 0, 0, 0]) and y[0, 1, 0, 0] == 9.0
    assert max_pool2x2(x2)[0, 0, 0, 0] == inf
    g = _cl(torch.ones(1, 1, 1, 1), dtype)
    (_, dx), (_, dx_ref) = _both(x2, g)
    assert torch.equal(dx, dx_ref)


def test_other_inputs_take_max_pool2d():
    f64 = torch.randn(2, 4, 6, 6, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    odd = _cl(torch.randn(2, 4, 7, 7))
    contiguous = torch.randn(2, 4, 6, 6).to(torch.bfloat16)
    for x in (f64, odd, contiguous):
        assert not fast_pool_applies(x)
        assert torch.equal(max_pool2x2(x), F.max_pool2d(x, 2))


@pytest.mark.parametrize("bf16", [True, False])
def test_lenet_matches_the_max_pool2d_model(monkeypatch, bf16):
    """A LeNet's logits and parameter gradients through the kernel equal the same network's
    with ``F.max_pool2d``, bit for bit (the pool is exact): bf16 autocast as in training, fp32
    as in evaluation."""
    from fastmix.train import models

    torch.manual_seed(0)
    net = models.LeNet(8).to(memory_format=torch.channels_last).eval()
    x = torch.rand(16, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (16,))
    outs, grads = [], []
    for pool in (max_pool2x2, lambda t: F.max_pool2d(t, 2)):
        net.zero_grad(set_to_none=True)
        monkeypatch.setattr(models, "max_pool2x2", pool)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = net(x)
        F.cross_entropy(out.float(), y).backward()
        outs.append(out.detach())
        grads.append([p.grad.clone() for p in net.parameters()])
    assert torch.equal(*outs)
    assert all(torch.equal(a, b) for a, b in zip(*grads, strict=True))
