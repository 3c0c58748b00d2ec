"""2x2 max-pool (stride 2) for the LeNets, with a backward that writes every input gradient once.

``F.max_pool2d``'s CPU backward first fills the whole input-sized gradient with zeros and then
scatters the output gradient through the saved int64 indices. ``max_pool2x2`` does the same
math in two Numba kernels over the channels_last memory (B, H, W, C):

    forward:  y[b, i, j, c] = max(x[b, 2i + di, 2j + dj, c] for (di, dj) in window order)
              arg[b, i, j, c] = the position (0..3) of that maximum, saved as uint8
    backward: dx[b, 2i + di, 2j + dj, c] = g[b, i, j, c] if (di, dj) is arg else 0

written in one pass, so no zero-filled buffer and no int64 index tensor. Window order is
row-major: (0, 0), (0, 1), (1, 0), (1, 1).

**Ties**: the first maximum in window order wins (it gets the whole gradient; the others get 0),
as in ``F.max_pool2d`` on the CPU, whose loop takes a later element only when it is strictly
greater. ``-0.0`` and ``+0.0`` are equal (the first one wins). **NaN**: a NaN in a window is
the maximum (the output is NaN, as in ``F.max_pool2d``), the first NaN gets the gradient.

bf16 values are compared through their bit patterns: for a bf16 ``h`` (uint16 bits), the key
``h | 0x8000`` for a positive sign and ``~h`` for a negative one orders like the floats
(IEEE 754 sign-magnitude); ``-0.0`` is mapped to ``+0.0`` first and NaN to the largest key.
The outputs are input elements, so the pool equals ``F.max_pool2d`` exactly, forward and
backward (non-overlapping windows: each input gets at most one gradient term).

float32 values are compared as floats with the same rule. Used for bf16 and float32
channels_last maps of even height and width on the CPU (the LeNets' training under autocast,
their fp32 evaluation and ODIN's input gradients); anything else goes to ``F.max_pool2d``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from numba import njit


@njit(cache=True, nogil=True, inline="always")
def _key(h: np.uint16) -> np.uint32:
    """An unsigned key of the bf16 bits ``h`` that orders like the floats (module docstring)."""
    v = np.uint32(h)
    if v == 0x8000:  # -0.0 == +0.0
        v = np.uint32(0)
    if (v & 0x7FFF) > 0x7F80:  # NaN: the largest
        return np.uint32(0x10000)
    if v & 0x8000:
        return np.uint32(0xFFFF) - v
    return v | np.uint32(0x8000)


@njit(cache=True, nogil=True)
def _forward_bf16(x: np.ndarray, y: np.ndarray, arg: np.ndarray) -> None:
    """x (B, H, W, C) uint16 bf16 bits -> y (B, H/2, W/2, C) bits and arg (same shape) 0..3."""
    nb, h2, w2, nc = y.shape
    for b in range(nb):
        for i in range(h2):
            for j in range(w2):
                for c in range(nc):
                    v0 = x[b, 2 * i, 2 * j, c]
                    v1 = x[b, 2 * i, 2 * j + 1, c]
                    v2 = x[b, 2 * i + 1, 2 * j, c]
                    v3 = x[b, 2 * i + 1, 2 * j + 1, c]
                    best, k, a = v0, _key(v0), 0
                    k1, k2, k3 = _key(v1), _key(v2), _key(v3)
                    if k1 > k:
                        best, k, a = v1, k1, 1
                    if k2 > k:
                        best, k, a = v2, k2, 2
                    if k3 > k:
                        best, k, a = v3, k3, 3
                    y[b, i, j, c] = best
                    arg[b, i, j, c] = a


@njit(cache=True, nogil=True)
def _forward_f32(x: np.ndarray, y: np.ndarray, arg: np.ndarray) -> None:
    """The float32 forward: x (B, H, W, C) -> y (B, H/2, W/2, C) and arg, same rule as bf16
    (a later element wins only when strictly greater, or when it is the first NaN)."""
    nb, h2, w2, nc = y.shape
    for b in range(nb):
        for i in range(h2):
            for j in range(w2):
                for c in range(nc):
                    best, a = x[b, 2 * i, 2 * j, c], 0
                    for k in range(1, 4):
                        v = x[b, 2 * i + k // 2, 2 * j + k % 2, c]
                        if (v > best or np.isnan(v)) and not np.isnan(best):
                            best, a = v, k
                    y[b, i, j, c] = best
                    arg[b, i, j, c] = a


@njit(cache=True, nogil=True)
def _backward(g: np.ndarray, arg: np.ndarray, dx: np.ndarray) -> None:
    """g (B, H/2, W/2, C), arg -> dx (B, H, W, C): g at arg, 0 elsewhere (bf16 bits or
    float32: the values are only copied)."""
    nb, h2, w2, nc = g.shape
    zero = dx.dtype.type(0)
    for b in range(nb):
        for i in range(h2):
            for j in range(w2):
                for c in range(nc):
                    v, a = g[b, i, j, c], arg[b, i, j, c]
                    dx[b, 2 * i, 2 * j, c] = v if a == 0 else zero
                    dx[b, 2 * i, 2 * j + 1, c] = v if a == 1 else zero
                    dx[b, 2 * i + 1, 2 * j, c] = v if a == 2 else zero
                    dx[b, 2 * i + 1, 2 * j + 1, c] = v if a == 3 else zero


def _nhwc(t: torch.Tensor) -> np.ndarray:
    """A channels_last (B, C, H, W) tensor's memory as a (B, H, W, C) array: uint16 bits for
    bf16 (numpy has no bf16), float32 as it is."""
    t = t.detach().permute(0, 2, 3, 1)
    return (t.view(torch.uint16) if t.dtype == torch.bfloat16 else t).numpy()


def _empty_like_cl(shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    return torch.empty(shape, dtype=like.dtype, memory_format=torch.channels_last)


class _MaxPool2x2(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        nb, nc, h, w = x.shape
        y = _empty_like_cl((nb, nc, h // 2, w // 2), x)
        arg = np.empty((nb, h // 2, w // 2, nc), np.uint8)
        kernel = _forward_bf16 if x.dtype == torch.bfloat16 else _forward_f32
        kernel(_nhwc(x), _nhwc(y), arg)
        ctx.arg, ctx.in_shape, ctx.dtype = arg, x.shape, x.dtype
        return y

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:
        g = g.to(ctx.dtype).contiguous(memory_format=torch.channels_last)
        dx = _empty_like_cl(tuple(ctx.in_shape), g)
        _backward(_nhwc(g), ctx.arg, _nhwc(dx))
        ctx.arg = None
        return dx


def fast_pool_applies(x: torch.Tensor) -> bool:
    """Whether ``max_pool2x2`` takes its kernel path: a CPU bf16 or float32 (B, C, H, W)
    channels_last tensor of even H and W."""
    return (
        x.device.type == "cpu"
        and x.dtype in (torch.bfloat16, torch.float32)
        and x.dim() == 4
        and x.shape[2] % 2 == 0
        and x.shape[3] % 2 == 0
        and x.is_contiguous(memory_format=torch.channels_last)
    )


def max_pool2x2(x: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(x, 2)``, exactly, through the kernels above where they apply (module
    docstring: tie rule, NaN), else ``F.max_pool2d`` itself."""
    if fast_pool_applies(x):
        return _MaxPool2x2.apply(x)
    return F.max_pool2d(x, 2)
