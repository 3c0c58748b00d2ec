"""Counter-based random numbers (splitmix64) for the Numba kernels: augmentation, fractals, fog.

Every random draw an augmentation makes for one sample comes from a stream seeded by
``sample_state(seed, epoch, index)``, so what a sample receives depends only on (seed, epoch,
dataset index): never on the batch it lands in, the thread that computes it or the visiting order.

Generator: splitmix64 (Steele, Lea & Flood, "Fast splittable pseudorandom number generators",
OOPSLA 2014; the constants of Vigna's public-domain ``splitmix64.c``). The state is one uint64
that advances by the golden-ratio increment ``GAMMA``; each output is the state passed through
the splitmix64 finaliser ``mix``. ``sample_state`` chains the finaliser over seed, epoch and
index.

Two forms of the same step: ``next_u64`` / ``uniform`` / ``randint`` / ``beta`` advance a
one-element uint64 array in place (the augmentation kernels pass it down their call chains), and
``next_uniform(state) -> (state, u)`` takes and returns the state as a value (the converters'
generators thread it through their loops). Both advance with ``advance`` and draw through
``mix``, so one state gives the same numbers in either form.

The functions are ``@njit(cache=True)`` and also run with the JIT disabled
(``NUMBA_DISABLE_JIT=1``), where they work on Python ints masked to 64 bits. Numba's uint64
arithmetic wraps by itself; the masks are no-ops there. The two tiny casts ``_u64`` / ``_i64``
have a Numba implementation (``np.uint64`` / ``np.int64``) and a Python one (``int(x)``, masked):
Numba's own ``int()`` keeps small unsigned types (``int(uint8)`` is a uint8, and uint8 - uint8
wraps as uint64), and a NumPy uint64 scalar in Python warns on overflow. The same numbers come out
with the JIT on and off (tested).
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numba.extending import overload

MASK64 = 0xFFFFFFFFFFFFFFFF
GAMMA = 0x9E3779B97F4A7C15  # 2**64 / golden ratio, odd
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB
INV_2_53 = 1.0 / 9007199254740992.0  # 2**-53


def _u64(x):
    """Python path: ``x`` as a Python int reduced modulo 2**64 (Numba path: ``np.uint64(x)``)."""
    return int(x) & MASK64


def _i64(x):
    """Python path: ``int(x)`` (Numba path: ``np.int64(x)``, a signed 64-bit integer)."""
    return int(x)


@overload(_u64, jit_options={"cache": True})
def _u64_jit(x):
    def impl(x):
        return np.uint64(x)

    return impl


@overload(_i64, jit_options={"cache": True})
def _i64_jit(x):
    def impl(x):
        return np.int64(x)

    return impl


@njit(cache=True)
def mix(z):
    """splitmix64 finaliser of a uint64: a bijection that scrambles every bit."""
    z = _u64(z)
    z = ((z ^ (z >> 30)) * MIX1) & MASK64
    z = ((z ^ (z >> 27)) * MIX2) & MASK64
    return z ^ (z >> 31)


@njit(cache=True)
def sample_state(seed, epoch, index):
    """Initial uint64 state of a sample's stream (all arithmetic modulo 2**64)::

        h = mix(seed + G);  h = mix((h ^ epoch) + G);  h = mix((h ^ index) + G)

    ``G`` is the golden-ratio increment, so zero inputs do not map to zero. Negative ints are
    taken modulo 2**64.
    """
    h = mix((_u64(seed) + GAMMA) & MASK64)
    h = mix(((h ^ _u64(epoch)) + GAMMA) & MASK64)
    h = mix(((h ^ _u64(index)) + GAMMA) & MASK64)
    return h


@njit(cache=True)
def new_state(seed, epoch, index):
    """A one-element uint64 state array for ``next_u64`` & co., seeded by ``sample_state``."""
    state = np.empty(1, dtype=np.uint64)
    state[0] = sample_state(seed, epoch, index)
    return state


@njit(cache=True)
def advance(s):
    """The next splitmix64 state: ``s + GAMMA`` modulo 2**64."""
    return (_u64(s) + GAMMA) & MASK64


@njit(cache=True)
def next_u64(state):
    """Advance ``state`` (uint64 array of length 1) by GAMMA and return ``mix`` of the new value."""
    s = advance(state[0])
    state[0] = s
    return mix(s)


@njit(cache=True)
def unit_from_u64(z):
    """The top 53 bits of a uint64 as a float64 in [0, 1)."""
    return (z >> 11) * INV_2_53


@njit(cache=True)
def uniform(state):
    """A float64 uniform on [0, 1) (53 random bits)."""
    return unit_from_u64(next_u64(state))


@njit(cache=True)
def next_uniform(state):
    """Functional step on a uint64 state value: ``(advance(state), uniform in [0, 1))``.

    The same draw as ``uniform`` on a one-element array holding ``state``; for loops that carry
    the state in a local variable instead of an array. Called from Python, pass the state as
    ``np.uint64``: Numba types a Python int as int64 and refuses one of 2**63 or more.
    """
    s = advance(state)
    return s, unit_from_u64(mix(s))


@njit(cache=True)
def randint(state, lo, hi):
    """An integer uniform on {lo, ..., hi} (inclusive), as int64.

    ``next_u64 % n``: the modulo bias is below n / 2**64 (under 1e-16 for every n used here).
    """
    n = _u64(hi - lo + 1)
    return lo + _i64(next_u64(state) % n)


@njit(cache=True)
def beta(state, a, b):
    """A Beta(a, 1) or Beta(1, b) draw by inverting the CDF with one uniform U.

    Beta(a, 1) has CDF x**a, so X = U**(1/a); Beta(1, b) has CDF 1 - (1-x)**b, so
    X = 1 - U**(1/b) (1 - U is uniform too). These are the only two forms PixMix's ``get_ab``
    uses; a general Beta(a, b) would need a gamma sampler and is not implemented (ValueError).
    """
    u = uniform(state)
    if b == 1.0:
        return u ** (1.0 / a)
    if a == 1.0:
        return 1.0 - u ** (1.0 / b)
    raise ValueError("rng.beta: only Beta(a, 1) and Beta(1, b) are supported")


def _fold(h: int, part: int | str) -> int:
    """``mix((h ^ part) + G)`` on Python ints; a string part is folded in byte by byte (its
    UTF-8), then its length, so ``"ab"`` and ``("a", "b")`` differ."""
    if isinstance(part, str):
        data = part.encode()
        for b in data:
            h = mix.py_func(((h ^ b) + GAMMA) & MASK64)
        return mix.py_func(((h ^ len(data)) + GAMMA) & MASK64)
    if isinstance(part, bool) or not isinstance(part, (int, np.integer)):
        raise TypeError(f"derive_seed: parts must be ints or strings, got {part!r}")
    return mix.py_func(((h ^ _u64(part)) + GAMMA) & MASK64)


def derive_seed(seed: int, purpose: str, *parts: int | str) -> int:
    """The seed of one random stream of a run: the one place where a training (or evaluation)
    seed becomes the seed of a particular use. Chains the splitmix64 finaliser over
    ``purpose`` (its UTF-8 bytes), ``seed`` and ``parts``::

        h = fold(0, purpose);  h = mix((h ^ seed) + G);  h = mix((h ^ part) + G) ...

    and returns the top 63 bits of ``h`` (a non-negative int64, which FFCV, NumPy, torch and
    the Numba kernels all accept). Distinct (purpose, seed, parts) give unrelated seeds: seed
    ``s + 1`` is not seed ``s`` shifted, so FFCV's ``default_rng(derived + epoch)`` orders of
    two training seeds share no epoch. Purposes used by fastmix: ``data_order``,
    ``outlier_order``, ``init``, ``dropout``, ``view`` (with the augmentation's seed tag),
    ``eval_subset`` and ``eval_ood_draws``.
    """
    if not isinstance(purpose, str) or not purpose:
        raise TypeError(f"derive_seed: purpose must be a non-empty string, got {purpose!r}")
    h = _fold(0, purpose)
    for part in (seed, *parts):
        h = _fold(h, part)
    return h >> 1
