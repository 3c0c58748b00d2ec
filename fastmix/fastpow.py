"""A vectorisable float32 power for Numba: ``out[i] = float32(x[i] ** a)`` over a whole array.

PixMix's multiply step, ``(2 mixed)**a * (2 partner)**b / 2`` (Hendrycks et al., CVPR 2022),
spends most of its time in ``powf``: Numba calls the C library's scalar ``powf`` once per pixel
(about 10-20 ns each here), and LLVM cannot vectorise a call into libm without Intel's SVML,
which the PyPI llvmlite is not built with. This module computes the same power with plain
float64 arithmetic that LLVM does vectorise (AVX2/AVX-512 lanes, no calls)::

    x = m 2^e,  m in [sqrt(1/2), sqrt(2))          exponent and mantissa from the float64 bits
    log2 x = e + (2 / ln 2) atanh(s),  s = (m - 1) / (m + 1),  |s| <= 0.1716
           = e + (2 / ln 2) s (1 + s^2/3 + s^4/5 + ... + s^12/13)     (series error < 1e-12)
    y = a log2 x;  n = round(y),  f = y - n in [-1/2, 1/2]
    x^a = 2^n exp(f ln 2) = 2^n sum_{j<=11} (f ln 2)^j / j!          (series error < 1e-13)

then rounds the float64 result to float32 once. Relative error before that rounding is below
1e-11 over the domain used here (x in [0, 2^128), |a| < 4, i.e. |y| <= ~600), far inside
float32's half-ulp of 3e-8, so the result is the correctly rounded float32 power except, in
principle, on near-ties closer than that error (none among the 900,000 tested values: equal to
float64 NumPy rounded once, everywhere). C's ``powf`` is itself within 1 ulp of that, so this
agrees with it up to 1 ulp (NumPy's float32 ``power``, a SIMD routine, is off by 1 ulp on ~19%
of those values).

Special cases follow C's ``powf`` for x >= 0: ``x**0 = 1`` (also for x = 0), ``0**a = 0`` for
a > 0 and ``+inf`` for a < 0. Inputs must be finite and non-negative (PixMix only takes powers of
clipped images in [0, 2]); negative or NaN inputs are not checked, and give garbage.

No ``fastmath`` and no FMA contraction: every float64 operation is an IEEE operation in a fixed
order, so the kernel gives bit-identical results with the JIT on and off (``NUMBA_DISABLE_JIT``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

_MANTISSA = np.int64(0x000FFFFFFFFFFFFF)
_ONE_BITS = np.int64(0x3FF0000000000000)  # bits of 1.0: the exponent field of [1, 2)
_SQRT2 = 1.4142135623730951
_TWO_OVER_LN2 = 2.8853900817779268
_LN2 = 0.6931471805599453
_Y_MIN = -1020.0  # 2^-1020 is still a normal float64; anything below rounds to float32 0


@njit(cache=True, error_model="numpy")
def pow_f32_array(x, a, out, work):
    """``out[i] = float32(x[i] ** a)`` for a 1-d float32 ``x`` (finite, >= 0) and a float32 ``a``.

    ``work``: float64 scratch of shape (4, n) or larger, n = ``x.shape[0]`` (no allocation here,
    so the caller can reuse one buffer per sample). At most 1 ulp from C's ``powf``.
    """
    n = x.shape[0]
    xd = work[0, :n]
    mant = work[1, :n]
    poly = work[2, :n]
    scale = work[3, :n]
    for i in range(n):
        xd[i] = np.float64(x[i])  # exact; float32 subnormals become normal float64
    x_bits = xd.view(np.int64)
    mant_bits = mant.view(np.int64)
    for i in range(n):
        mant_bits[i] = (x_bits[i] & _MANTISSA) | _ONE_BITS
        poly[i] = np.float64((x_bits[i] >> 52) - 1023)  # the exponent e, as float64
    a64 = np.float64(a)
    scale_bits = scale.view(np.int64)
    for i in range(n):
        m = mant[i]
        e = poly[i]
        high = m > _SQRT2
        m = m * 0.5 if high else m
        e = e + 1.0 if high else e
        s = (m - 1.0) / (m + 1.0)
        z = s * s
        z2 = z * z
        z4 = z2 * z2
        # 1 + z/3 + z^2/5 + ... + z^6/13, in Estrin's form: short dependency chains, so the
        # vector lanes of neighbouring iterations overlap (Horner was latency-bound, 1.25x slower)
        p = ((1.0 + z * (1.0 / 3.0)) + z2 * ((1.0 / 5.0) + z * (1.0 / 7.0))) + z4 * (
            ((1.0 / 9.0) + z * (1.0 / 11.0)) + z2 * (1.0 / 13.0)
        )
        y = a64 * (e + s * p * _TWO_OVER_LN2)
        y = max(min(y, 1020.0), _Y_MIN)
        k = np.floor(y + 0.5)
        f = (y - k) * _LN2
        f2 = f * f
        f4 = f2 * f2
        f8 = f4 * f4
        q = (
            ((1.0 + f) + f2 * (0.5 + f * (1.0 / 6.0)))
            + f4 * (((1.0 / 24.0) + f * (1.0 / 120.0)) + f2 * ((1.0 / 720.0) + f * (1.0 / 5040.0)))
            + f8
            * (
                ((1.0 / 40320.0) + f * (1.0 / 362880.0))
                + f2 * ((1.0 / 3628800.0) + f * (1.0 / 39916800.0))
            )
        )
        poly[i] = q
        scale_bits[i] = (np.int64(k) + 1023) << 52  # 2^k
    zero_pow = np.float32(1.0) if a == 0 else (np.float32(0.0) if a > 0 else np.float32(np.inf))
    for i in range(n):
        r = np.float32(poly[i] * scale[i])
        r = r if a != 0 else np.float32(1.0)
        out[i] = r if x[i] != 0 else zero_pow
