"""Vectorisable float64 log2 and exp2 over arrays, for PixMix's multiply step in Numba.

PixMix's multiply step (Hendrycks et al., CVPR 2022) is ``(2 m)**a * (2 p)**b / 2`` per pixel.
Numba would call the C library's scalar ``powf`` twice per pixel, one pixel at a time: LLVM
cannot vectorise a call into libm without Intel's SVML, which the PyPI llvmlite lacks. fastmix
computes the product in one go instead, as

    (2 m)**a (2 p)**b / 2 = 2 ** (a log2(2 m) + b log2(2 p) - 1)

with ``log2(2 p)`` from a 256-entry table (p is a uint8 picture) and the log2 of the mixed image
and the final exp2 from the two loops below: plain float64 arithmetic in a fixed order, which
LLVM vectorises (AVX2/AVX-512 lanes, no calls) and which gives bit-identical results with the
JIT on and off (no ``fastmath``, no FMA contraction)::

    x = m 2^e,  m in [sqrt(1/2), sqrt(2))          exponent and mantissa from the float64 bits
    log2 x = e + (2 / ln 2) atanh(s),  s = (m - 1) / (m + 1),  |s| <= 0.1716
           = e + (2 / ln 2) s (1 + s^2/3 + ... + s^10/11)           (series error < 2e-10 s)
    2^y = 2^n exp(f ln 2),  n = round(y),  f = y - n in [-1/2, 1/2]
        = 2^n sum_{j<=10} (f ln 2)^j / j!                           (series error < 3e-13)

Accuracy: log2 within 3e-11 absolute on PixMix's inputs (2 m in [0, 2]), exp2 within 1e-12
relative before the final rounding to float32, so the fused product is the correctly rounded
float32 of the exact product except on near-ties (tested). The two-``powf`` reference rounds
three times (each power, the product), so the two differ by about 1 float32 ulp at most; the
tests compare PixMix with that reference within a stated tolerance.

Inputs: ``log2_array`` takes finite x >= 0 (0 -> -inf); ``exp2_f32_array`` any float64 y
(clamped to [-1020, 1020]: -inf -> 0, large -> float32 inf). NaN is not handled.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_MANTISSA = np.int64(0x000FFFFFFFFFFFFF)
_ONE_BITS = np.int64(0x3FF0000000000000)  # bits of 1.0: the exponent field of [1, 2)
_SQRT2 = 1.4142135623730951
_TWO_OVER_LN2 = 2.8853900817779268
_LN2 = 0.6931471805599453
_Y_MAX = 1020.0  # 2^1020 overflows float32 to inf, as any y above 128 does
_Y_MIN = -1020.0  # 2^-1020 is still a normal float64; anything below 2^-150 rounds to 0


@njit(cache=True, error_model="numpy")
def log2_array(x, out, work):
    """``out[i] = log2(x[i])`` (float64) for a 1-d float32 or float64 ``x`` (finite, >= 0;
    0 -> -inf). ``work``: float64 scratch of shape (2, n) or larger; nothing is allocated."""
    n = x.shape[0]
    xd = work[0, :n]
    mant = work[1, :n]
    for i in range(n):
        xd[i] = np.float64(x[i])  # exact; float32 subnormals become normal float64
    x_bits = xd.view(np.int64)
    mant_bits = mant.view(np.int64)
    for i in range(n):
        mant_bits[i] = (x_bits[i] & _MANTISSA) | _ONE_BITS
        out[i] = np.float64((x_bits[i] >> 52) - 1023)  # the exponent e, as float64
    for i in range(n):
        m = mant[i]
        e = out[i]
        high = m > _SQRT2
        m = m * 0.5 if high else m
        e = e + 1.0 if high else e
        s = (m - 1.0) / (m + 1.0)
        z = s * s
        z2 = z * z
        z4 = z2 * z2
        # 1 + z/3 + z^2/5 + ... + z^5/11 in Estrin's form: short dependency chains, so the
        # vector lanes of neighbouring iterations overlap
        p = ((1.0 + z * (1.0 / 3.0)) + z2 * ((1.0 / 5.0) + z * (1.0 / 7.0))) + z4 * (
            (1.0 / 9.0) + z * (1.0 / 11.0)
        )
        v = e + s * p * _TWO_OVER_LN2
        out[i] = v if xd[i] != 0.0 else -np.inf


@njit(cache=True, error_model="numpy")
def exp2_f32_array(y, out, work):
    """``out[i] = float32(2 ** y[i])`` for a 1-d float64 ``y`` (clamped to [-1020, 1020]).
    ``work``: float64 scratch of shape (2, n) or larger; nothing is allocated."""
    n = y.shape[0]
    poly = work[0, :n]
    scale = work[1, :n]
    scale_bits = scale.view(np.int64)
    for i in range(n):
        yc = max(min(y[i], _Y_MAX), _Y_MIN)
        k = np.floor(yc + 0.5)
        f = (yc - k) * _LN2
        f2 = f * f
        f4 = f2 * f2
        f8 = f4 * f4
        poly[i] = (
            ((1.0 + f) + f2 * (0.5 + f * (1.0 / 6.0)))
            + f4 * (((1.0 / 24.0) + f * (1.0 / 120.0)) + f2 * ((1.0 / 720.0) + f * (1.0 / 5040.0)))
            + f8 * (((1.0 / 40320.0) + f * (1.0 / 362880.0)) + f2 * (1.0 / 3628800.0))
        )
        scale_bits[i] = (np.int64(k) + 1023) << 52  # 2^k
    for i in range(n):
        out[i] = np.float32(poly[i] * scale[i])
