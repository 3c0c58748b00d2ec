"""PixMix as a Numba kernel: one sample from a random plan, or a whole batch.

PixMix (Hendrycks et al., "PixMix: Dreamlike Pictures Comprehensively Improve Safety Measures",
CVPR 2022; code andyzoujm/pixmix ``cifar.py`` / ``pixmix_utils.py``, below "the reference").
Per sample, with ``x`` the uint8 image and ``m`` ONE mixing picture::

    m      = random 28x28 crop of a random bank picture (bank uint8 (M, S, S), S = 32 default)
    mixed  = augment(x) with p 0.5, else x                         (as float32 in [0, 1])
    repeat r ~ UniformInt{0..k}:
        partner = augment(x) with p 0.5, else m
        mixed   = clip(add(mixed, partner) or multiply(mixed, partner) (p 0.5 each), 0, 1)

    get_ab(beta): p 0.5: a ~ Beta(beta, 1), b ~ Beta(1, beta); else a = 1 + Beta(1, beta),
                  b = -Beta(1, beta)   (both rounded to float32 like the reference)
    add(i1, i2)      = ((a (2 i1 - 1) + b (2 i2 - 1)) + 1) / 2
    multiply(i1, i2) = (2 i1)**a * max(2 i2, 1e-37)**b / 2
                     computed as 2 ** (a log2(2 i1) + b log2(max(2 i2, 1e-37)) - 1) in float64,
                     rounded once to float32 (``fastmix.augment.fastpow``; the reference rounds each
                     float32 power and the product, so the two differ by up to ~1 ulp)

The crop stands in for the reference's ``Resize(36) + RandomCrop(32)`` of the mixing set: the bank
is generated at 32x32 (the "resize" step: 4 px of margin, as 36 -> 32) and a random 28x28 window
is cut here, so the mixing picture shifts by up to 4 px between uses.
Normalisation ((x - 0.5) / 0.5 in the reference) is NOT done here: the model does it.

``augment`` is ONE Pillow-exact op (``fastmix.augment.pillow_ops``) drawn uniformly from the
reference list, at level ``l ~ U(0.1, severity)``.

Random draws are separate from the math: ``draw_pixmix_plan`` writes every draw of one sample into
a float64 "plan" vector (layout below) and ``apply_pixmix_plan`` is deterministic given the plan,
so tests feed the same plan to an independent NumPy/Pillow reference.

Plan layout (``plan_size(k) = PLAN_HEAD + PLAN_ROUND * k`` floats)::

    [0] bank index  [1] crop row  [2] crop column
    [3] 1 if the starting image is augmented, [4] op id, [5] level, [6] sign (+1 / -1)
    [7] r, the number of mixing rounds
    round j at PLAN_HEAD + PLAN_ROUND * j: [+0] 1 if the partner is augment(x) (else the mixing
    picture), [+1] op id, [+2] level, [+3] sign, [+4] 0 = add / 1 = multiply, [+5] a, [+6] b

Draw order per sample: bank index, crop row, crop column, starting-augment coin, (op, level,
sign if augmented), r, then per round: partner coin, (op, level, sign), add/multiply coin, get_ab
(branch coin, then a, then b). Ops without a level (autocontrast, equalize, color) still draw one.

Every sample draws from its own counter-based stream ``fastmix.rng.sample_state(seed, epoch,
index)``, so the batch output does not depend on the thread count, the batch composition or the
visiting order; the kernels also run with ``NUMBA_DISABLE_JIT=1`` with bit-identical results.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from fastmix.augment import pillow_ops
from fastmix.augment.fastpow import exp2_f32_array, log2_array
from fastmix.augment.kinds import Param, register_augmentation
from fastmix.augment.pillow_ops import _F0, _F1, _F2, _F255, augment_u8
from fastmix.augment.unit import u8_to_unit
from fastmix.rng import _i64, beta, randint, sample_state, uniform

PIXMIX_K = 4
PIXMIX_BETA = 3.0
AUG_SEVERITY = 3.0
MAX_SEVERITY = 10.0  # levels live on the reference's 0..10 scale

PLAN_HEAD = 8
PLAN_ROUND = 7
P_BANK, P_CROP_Y, P_CROP_X, P_AUG, P_OP, P_LEVEL, P_SIGN, P_ROUNDS = range(8)
R_AUG, R_OP, R_LEVEL, R_SIGN, R_MIX, R_A, R_B = range(7)

_TINY = np.float32(1e-37)  # the reference's ``img2.clip(1e-37)``
# 2 v / 255 for every uint8 v (float32, as the reference computes ``img * 2``), and the same
# clipped at 1e-37; their float64 log2 (log2 0 = -inf): the multiply step's tables.
_UNIT2 = (np.arange(256, dtype=np.float32) / _F255) * _F2
_UNIT2_TINY = np.maximum(_UNIT2, _TINY)
with np.errstate(divide="ignore"):
    _LOG2_UNIT2 = np.log2(_UNIT2.astype(np.float64))
_LOG2_UNIT2_TINY = np.log2(_UNIT2_TINY.astype(np.float64))


def plan_size(k: int) -> int:
    """Length of a PixMix plan vector for at most ``k`` mixing rounds."""
    return PLAN_HEAD + PLAN_ROUND * int(k)


@njit(cache=True, error_model="numpy")
def _draw_augment(state, severity, n_ops, plan, at):
    plan[at] = randint(state, 0, n_ops - 1)
    plan[at + 1] = 0.1 + (severity - 0.1) * uniform(state)  # np.random.uniform(0.1, severity)
    plan[at + 2] = -1.0 if uniform(state) > 0.5 else 1.0


@njit(cache=True, error_model="numpy")
def get_ab(state, beta_param):
    """PixMix ``get_ab``: (a, b) as float32, both branches with probability 0.5."""
    if uniform(state) < 0.5:
        a = np.float32(beta(state, beta_param, 1.0))
        b = np.float32(beta(state, 1.0, beta_param))
    else:
        a = _F1 + np.float32(beta(state, 1.0, beta_param))
        b = -np.float32(beta(state, 1.0, beta_param))
    return a, b


@njit(cache=True, error_model="numpy")
def draw_pixmix_plan(state, bank_n, bank_h, bank_w, h, w, k, beta_param, severity, n_ops, plan):
    """Draw every random choice of one PixMix sample into ``plan`` (layout in the module doc)."""
    plan[:] = 0.0
    plan[P_BANK] = randint(state, 0, bank_n - 1)
    plan[P_CROP_Y] = randint(state, 0, bank_h - h)
    plan[P_CROP_X] = randint(state, 0, bank_w - w)
    if uniform(state) < 0.5:
        plan[P_AUG] = 1.0
        _draw_augment(state, severity, n_ops, plan, P_OP)
    r = randint(state, 0, k)
    plan[P_ROUNDS] = r
    for j in range(r):
        at = PLAN_HEAD + PLAN_ROUND * j
        if uniform(state) < 0.5:
            plan[at + R_AUG] = 1.0
            _draw_augment(state, severity, n_ops, plan, at + R_OP)
        plan[at + R_MIX] = 0.0 if uniform(state) < 0.5 else 1.0
        a, b = get_ab(state, beta_param)
        plan[at + R_A] = a
        plan[at + R_B] = b


@njit(cache=True, error_model="numpy")
def mix_add(mixed, partner, a, b):
    """In place: ``mixed = clip(((a (2 mixed - 1) + b (2 p - 1)) + 1) / 2, 0, 1)`` (float32),
    ``p = partner / 255`` (partner uint8); one branch-free pass that LLVM vectorises."""
    for y in range(mixed.shape[0]):
        for x in range(mixed.shape[1]):
            q = b * ((np.float32(_i64(partner[y, x])) / _F255) * _F2 - _F1)
            o = (a * (mixed[y, x] * _F2 - _F1) + q + _F1) / _F2
            mixed[y, x] = min(max(o, _F0), _F1)


@njit(cache=True)
def multiply_workspace(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Scratch for ``mix_multiply`` on (h, w) images: float64 (3, h w) and float32 (1, h w).
    Numba-callable; part of ``pixmix_workspace`` (one per chunk of a batch)."""
    return np.empty((3, h * w), dtype=np.float64), np.empty((1, h * w), dtype=np.float32)


@njit(cache=True, error_model="numpy")
def mix_multiply(mixed, mixed_u8, mixed_is_u8, partner, a, b, work64, work32):
    """In place: ``mixed = clip((2 mixed)**a * max(2 p, 1e-37)**b / 2, 0, 1)`` (float32),
    ``p = partner / 255`` (partner uint8).

    Computed as ``2 ** (a log2(2 mixed) + b log2(max(2 p, 1e-37)) - 1)`` in float64, rounded once
    to float32 (``fastmix.augment.fastpow``: vectorised, no libm calls): the partner's log2 from a
    table per uint8 value, the mixed image's from a table too while it still equals
    ``mixed_u8 / 255`` (``mixed_is_u8``: before the first mixing round), else by one vector
    pass. ``x**0 = 1`` for every x, as ``powf``. Within about 1 float32 ulp of the reference's
    two float32 powers and product (which round three times; this rounds once).
    Scratch: ``work64``, ``work32`` from ``multiply_workspace`` (nothing is allocated here).
    """
    h = mixed.shape[0]
    w = mixed.shape[1]
    n = h * w
    y = work64[2, :n]
    res = work32[0, :n]
    a64 = np.float64(a)
    b64 = np.float64(b)
    use_a = a != 0  # 0 * log2(0) would be NaN; x**0 is 1
    use_b = b != 0
    if mixed_is_u8:
        for r in range(h):
            for c in range(w):
                ta = a64 * _LOG2_UNIT2[_i64(mixed_u8[r, c])] if use_a else 0.0
                tb = b64 * _LOG2_UNIT2_TINY[_i64(partner[r, c])] if use_b else 0.0
                y[r * w + c] = (ta + tb) - 1.0
    else:
        for r in range(h):
            for c in range(w):
                res[r * w + c] = mixed[r, c] * _F2
        log2_array(res, y, work64)
        for r in range(h):
            for c in range(w):
                i = r * w + c
                ta = a64 * y[i] if use_a else 0.0
                tb = b64 * _LOG2_UNIT2_TINY[_i64(partner[r, c])] if use_b else 0.0
                y[i] = (ta + tb) - 1.0
    exp2_f32_array(y, res, work64)
    for r in range(h):
        for c in range(w):
            mixed[r, c] = min(max(res[r * w + c], _F0), _F1)


@njit(cache=True)
def pixmix_workspace(h: int, w: int) -> tuple:
    """Scratch for ``apply_pixmix_plan_into`` on (h, w) images: (augmented start image,
    augmented partner, mixing picture) uint8 (h, w) each, then ``multiply_workspace(h, w)``."""
    work64, work32 = multiply_workspace(h, w)
    return (
        np.empty((h, w), dtype=np.uint8),
        np.empty((h, w), dtype=np.uint8),
        np.empty((h, w), dtype=np.uint8),
        work64,
        work32,
    )


@njit(cache=True, error_model="numpy")
def apply_pixmix_plan_into(x, bank, plan, out, workspace):
    """``apply_pixmix_plan`` with caller-owned scratch (``pixmix_workspace``), so a batch
    allocates once per chunk of samples instead of once per sample."""
    start_buf, aug, picture, work64, work32 = workspace
    h = x.shape[0]
    w = x.shape[1]
    if plan[P_AUG] != 0.0:
        augment_u8(x, int(plan[P_OP]), plan[P_LEVEL], plan[P_SIGN], start_buf)
        start = start_buf
    else:
        start = x
    u8_to_unit(start, out)
    r = int(plan[P_ROUNDS])
    have_picture = False
    for j in range(r):
        at = PLAN_HEAD + PLAN_ROUND * j
        if plan[at + R_AUG] != 0.0:
            augment_u8(x, int(plan[at + R_OP]), plan[at + R_LEVEL], plan[at + R_SIGN], aug)
            partner = aug
        else:
            if not have_picture:  # contiguous copy of the crop: the mixing loops vectorise
                bi = int(plan[P_BANK])
                cy = int(plan[P_CROP_Y])
                cx = int(plan[P_CROP_X])
                picture[:, :] = bank[bi, cy : cy + h, cx : cx + w]
                have_picture = True
            partner = picture
        a = np.float32(plan[at + R_A])
        b = np.float32(plan[at + R_B])
        if plan[at + R_MIX] == 0.0:
            mix_add(out, partner, a, b)
        else:
            mix_multiply(out, start, j == 0, partner, a, b, work64, work32)


@njit(cache=True, error_model="numpy")
def apply_pixmix_plan(x, bank, plan, out):
    """Deterministic part of PixMix: ``out`` (float32 (H, W)) = PixMix of uint8 ``x`` under
    ``plan``, with the mixing picture cropped from ``bank`` (uint8 (M, S1, S2))."""
    apply_pixmix_plan_into(x, bank, plan, out, pixmix_workspace(x.shape[0], x.shape[1]))


BATCH_CHUNK = 4  # samples per parallel task: scratch is allocated once per task


@njit(cache=True, parallel=True, nogil=True, error_model="numpy")
def pixmix_batch(images, indices, bank, out, seed, epoch, k, beta_param, severity, n_ops):
    """PixMix a batch: ``out[i]`` (float32 (B, H, W), in [0, 1]) from ``images[i]`` (uint8
    (B, H, W)) with the stream ``sample_state(seed, epoch, indices[i])``; prange over chunks of
    ``BATCH_CHUNK`` samples, each with its own scratch. Every sample depends only on its own
    stream, so the output does not depend on the chunking or the thread count.

    ``bank``: uint8 (M, S1, S2) mixing pictures with S1 >= H, S2 >= W. ``n_ops``: N_OPS_BASIC
    or N_OPS_ALL. Parameters are validated by the caller (``fastmix.augment.ffcv_ops.PixMix``).
    """
    n = images.shape[0]
    h = images.shape[1]
    w = images.shape[2]
    for c in prange((n + BATCH_CHUNK - 1) // BATCH_CHUNK):
        workspace = pixmix_workspace(h, w)
        plan = np.empty(PLAN_HEAD + PLAN_ROUND * k, dtype=np.float64)
        state = np.empty(1, dtype=np.uint64)
        for i in range(c * BATCH_CHUNK, min(n, (c + 1) * BATCH_CHUNK)):
            state[0] = sample_state(seed, epoch, indices[i])
            draw_pixmix_plan(
                state, bank.shape[0], bank.shape[1], bank.shape[2], h, w,
                k, beta_param, severity, n_ops, plan,
            )  # fmt: skip
            apply_pixmix_plan_into(images[i], bank, plan, out[i], workspace)


@njit(cache=True, error_model="numpy")
def draw_pixmix_plans(seed, epoch, indices, bank_shape, h, w, k, beta_param, severity, n_ops):
    """The plans ``pixmix_batch`` draws for ``indices``: float64 (len(indices), plan_size(k))."""
    plans = np.empty((indices.shape[0], PLAN_HEAD + PLAN_ROUND * k), dtype=np.float64)
    for i in range(indices.shape[0]):
        state = np.empty(1, dtype=np.uint64)
        state[0] = sample_state(seed, epoch, indices[i])
        draw_pixmix_plan(
            state, bank_shape[0], bank_shape[1], bank_shape[2], h, w,
            k, beta_param, severity, n_ops, plans[i],
        )  # fmt: skip
    return plans


def _pixmix_view(images, indices, out, seed, epoch, augmentation, bank, launch) -> None:
    """One PixMix view: ``pixmix_batch`` with the mixing bank and the op list's length."""
    a = augmentation
    n_ops = pillow_ops.N_OPS_ALL if a.pixmix_all_ops else pillow_ops.N_OPS_BASIC
    launch(
        pixmix_batch, 1, images, indices, bank, out, seed, epoch,
        a.pixmix_k, a.pixmix_beta, a.pixmix_severity, n_ops,
    )  # fmt: skip


register_augmentation(
    "pixmix",
    kernel=pixmix_batch,
    params={
        "pixmix_k": Param(PIXMIX_K, 0, 64, help="mixing rounds, at most"),
        "pixmix_beta": Param(PIXMIX_BETA, 0.0, None, lo_open=True, help="mixing Beta"),
        "pixmix_severity": Param(
            AUG_SEVERITY, 0.1, MAX_SEVERITY, lo_open=True, help="op levels ~ U(0.1, severity)"
        ),
        "pixmix_all_ops": Param(False, help="13 ops instead of andyzoujm/pixmix's 9"),
    },
    needs_bank=True,
    task_iterations=1,  # one iteration is a chunk of BATCH_CHUNK samples, a task of its own
    call=_pixmix_view,
)
