"""``fastmix.augment.fastpow`` (vectorised log2 / exp2) against float64 NumPy, JIT on and off,
and the fused multiply step built on them against the exact product rounded once.

References: ``np.log2`` / ``np.exp2`` in float64 are accurate to about one float64 ulp, far
below the bounds tested here, so they stand in for the exact functions."""

from __future__ import annotations

import numpy as np
import pytest

from fastmix.augment import pixmix
from fastmix.augment.fastpow import exp2_f32_array, log2_array


def _log2(x: np.ndarray, jit: bool = True) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.empty(len(x), np.float64)
    fn = log2_array if jit else log2_array.py_func
    fn(x, out, np.empty((2, max(len(x), 1))))
    return out


def _exp2(y: np.ndarray, jit: bool = True) -> np.ndarray:
    y = np.ascontiguousarray(y, dtype=np.float64)
    out = np.empty(len(y), np.float32)
    fn = exp2_f32_array if jit else exp2_f32_array.py_func
    with np.errstate(over="ignore"):  # JIT off: NumPy warns where float32 overflows to inf
        fn(y, out, np.empty((2, max(len(y), 1))))
    return out


def _ulps(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Distance in float32 units in the last place (both finite and >= 0)."""
    return np.abs(got.view(np.int32).astype(np.int64) - want.view(np.int32).astype(np.int64))


def _inputs(g: np.random.Generator) -> np.ndarray:
    """What PixMix takes the log2 of: 2 x image in [0, 2], tiny values, awkward values."""
    special = [1.0, 2.0, 1e-37, 1e-44, 1.17549435e-38, 0.5, 1.4142135, 1.4142137, 0.99999994]
    return np.concatenate([g.uniform(0, 2, 20000), 10.0 ** g.uniform(-44, 0, 5000), special])


def test_log2_within_3e_11_of_numpy_and_exact_on_powers_of_two():
    x = _inputs(np.random.default_rng(0)).astype(np.float32)
    err = np.abs(_log2(x) - np.log2(x.astype(np.float64)))
    assert err.max() < 3e-11, err.max()
    powers = np.array([2.0**k for k in range(-126, 2)], np.float32)
    np.testing.assert_array_equal(_log2(powers), np.arange(-126, 2, dtype=np.float64))
    assert _log2(np.zeros(3, np.float32)).tolist() == [-np.inf] * 3


def test_exp2_is_the_correctly_rounded_float32_except_near_ties():
    g = np.random.default_rng(1)
    y = np.concatenate([g.uniform(-150, 128, 200000), g.uniform(-1, 1, 100000)])
    got = _exp2(y)
    with np.errstate(over="ignore"):
        want = np.exp2(y).astype(np.float32)
    finite = np.isfinite(want)
    np.testing.assert_array_equal(np.isfinite(got), finite)
    u = _ulps(got[finite], want[finite])
    assert u.max() <= 1
    assert (u > 0).mean() < 1e-4  # only values within ~1e-12 of a rounding tie may differ


def test_exp2_special_values():
    y = np.array([-np.inf, -1e6, -151.0, 0.0, 1.0, -3.0, 127.0, 128.0, 1e6])
    got = _exp2(y)
    want = np.array([0, 0, 0, 1, 2, 0.125, 2.0**127, np.inf, np.inf], np.float32)
    np.testing.assert_array_equal(got, want)


def test_jit_on_and_off_are_bit_identical():
    g = np.random.default_rng(7)
    x = _inputs(g)[::5].astype(np.float32)
    np.testing.assert_array_equal(_log2(x, jit=True), _log2(x, jit=False))
    y = g.uniform(-200, 130, 5000)
    np.testing.assert_array_equal(_exp2(y, jit=True), _exp2(y, jit=False))


@pytest.mark.parametrize("first_round", [True, False])
def test_fused_multiply_is_the_exact_product_rounded_once(first_round):
    """``mix_multiply`` = float32 of the exact (2 m)**a (2 p)**b / 2 (float64 NumPy), clipped:
    at most 1 ulp away, and equal on all but near-ties."""
    g = np.random.default_rng(3)
    start = g.integers(0, 256, (28, 28)).astype(np.uint8)
    partner = g.integers(0, 256, (28, 28)).astype(np.uint8)
    partner[:2] = 0  # the 1e-37 clip
    if first_round:
        mixed0 = start.astype(np.float32) / np.float32(255)
    else:
        mixed0 = g.uniform(0, 1, (28, 28)).astype(np.float32)
        mixed0[0, :5] = [0.0, 1.0, 1e-40, 0.5, 0.99999994]
    i1 = mixed0.astype(np.float64) * 2
    i2 = np.maximum(pixmix._UNIT2[partner], np.float32(1e-37)).astype(np.float64)
    differing = total = 0
    for a, b in [(0.8, 0.3), (1.6, -0.7), (0.05, 0.99), (1.0, -0.01), (0.0, 0.4), (0.7, 0.0)]:
        a32, b32 = np.float32(a), np.float32(b)
        m = mixed0.copy()
        pixmix.mix_multiply(
            m, start, first_round, partner, a32, b32, *pixmix.multiply_workspace(28, 28)
        )
        with np.errstate(over="ignore", invalid="ignore"):
            exact = i1 ** np.float64(a32) * i2 ** np.float64(b32) / 2
        want = np.clip(exact, 0, 1).astype(np.float32)
        u = _ulps(m, want)
        assert u.max() <= 1, (a, b)
        differing, total = differing + int((u > 0).sum()), total + u.size
    assert differing / total < 1e-3
