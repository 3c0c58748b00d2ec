"""Numba augmentation kernels: PixMix and salt-and-pepper, one sample or a whole batch.

Pure functions, usable and testable without FFCV: ``@njit(cache=True)`` (the compiled code is
cached on disk, so a second process does not pay the JIT again) with ``error_model="numpy"`` (no
Python ZeroDivisionError checks, which block vectorisation; no divisor here can be zero). The
batch kernels run a ``prange`` over the batch and release the GIL; every sample draws from its
own counter-based stream
``fastmix.rng.sample_state(seed, epoch, index)``, so the output does not depend on the thread
count, the batch composition or the visiting order. All kernels also run with
``NUMBA_DISABLE_JIT=1`` and give bit-identical results (tested).

PixMix (Hendrycks et al., "PixMix: Dreamlike Pictures Comprehensively Improve Safety Measures",
CVPR 2022; reference code andyzoujm/pixmix ``cifar.py`` / ``pixmix_utils.py``). Per sample, with
``x`` the uint8 image and ``m`` ONE mixing picture::

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
                     rounded once to float32 (``fastmix.fastpow``; the reference rounds each
                     float32 power and the product, so the two differ by up to ~1 ulp)

The crop stands in for the reference's ``Resize(36) + RandomCrop(32)`` of the mixing set: the bank
is generated at 32x32 (the "resize" step: 4 px of margin, as 36 -> 32) and a random 28x28 window
is cut here, so the mixing picture shifts by up to 4 px between uses.
Normalisation ((x - 0.5) / 0.5 in the reference) is NOT done here: the model does it.

``augment`` applies ONE op drawn uniformly from the reference list (ids in ``OP_NAMES``):
autocontrast, equalize, posterize, rotate, solarize, shear_x, shear_y, translate_x, translate_y,
and with ``all_ops`` also color, contrast, brightness, sharpness. ``color`` is kept as an identity
op (PIL's Color enhancer is a no-op on a grayscale image) so that the op frequencies stay those of
the reference's all-ops list. Level ``l ~ U(0.1, severity)`` per op call; magnitudes with SIZE = 28:
rotate ``int(3 l)`` degrees, shear ``0.03 l``, translate ``int(l * (SIZE / 3) / 10)`` px (each with
a random sign), posterize ``4 - int(0.4 l)`` bits, solarize threshold ``256 - int(25.6 l)``,
enhance factor ``0.18 l + 0.1``. The ops reproduce Pillow on mode "L" images bit for bit (tested
against Pillow): ``ImageOps`` autocontrast (cutoff 0) / equalize (Pillow's histogram step) /
posterize / solarize, ``Image.rotate`` and ``Image.transform(AFFINE)`` with
``resample=Image.BILINEAR`` and fill 0 -- the reference passes BILINEAR to every geometric op,
so this is Pillow's bilinear filter (not its NEAREST default); AFFINE data (a, b, c, d, e, f) maps
output pixel centre (x, y) to input (a x + b y + c, d x + e y + f) -- and ``ImageEnhance``
contrast / brightness / sharpness (Pillow's float32 blend and 3x3 SMOOTH filter).

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

Salt-and-pepper (scikit-image ``random_noise(mode="s&p")`` semantics): every pixel independently
is replaced with probability ``amount``; a replaced pixel becomes salt (255) or pepper (0) with
equal odds. One uint64 per pixel: its top 53 bits decide the replacement (uniform < amount), its
lowest bit salt vs pepper. Default ``SP_AMOUNT = 0.1``: MNIST-C's ``impulse_noise`` is this very
noise at amount 0.17, so training at 0.17 would put one test corruption in the training
distribution; 0.1 (twice scikit-image's default 0.05) is strong enough to matter and stays below
the test severity. The overlap in kind with impulse_noise remains and must be reported with any
MNIST-C number of an S&P model.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from fastmix.fastpow import exp2_f32_array, log2_array
from fastmix.rng import _i64, beta, next_u64, randint, sample_state, uniform, unit_from_u64

# ----------------------------------------------------------------------------- constants

OP_NAMES = (
    "autocontrast",
    "equalize",
    "posterize",
    "rotate",
    "solarize",
    "shear_x",
    "shear_y",
    "translate_x",
    "translate_y",
    "color",
    "contrast",
    "brightness",
    "sharpness",
)
AUTOCONTRAST = 0
EQUALIZE = 1
POSTERIZE = 2
ROTATE = 3
SOLARIZE = 4
SHEAR_X = 5
SHEAR_Y = 6
TRANSLATE_X = 7
TRANSLATE_Y = 8
COLOR = 9
CONTRAST = 10
BRIGHTNESS = 11
SHARPNESS = 12
N_OPS_BASIC = 9  # the reference's default ``augmentations``
N_OPS_ALL = 13  # ``--all-ops``: + color, contrast, brightness, sharpness

PIXMIX_K = 4
PIXMIX_BETA = 3.0
AUG_SEVERITY = 3.0
MAX_SEVERITY = 10.0  # levels live on the reference's 0..10 scale
SP_AMOUNT = 0.1

PLAN_HEAD = 8
PLAN_ROUND = 7
P_BANK, P_CROP_Y, P_CROP_X, P_AUG, P_OP, P_LEVEL, P_SIGN, P_ROUNDS = range(8)
R_AUG, R_OP, R_LEVEL, R_SIGN, R_MIX, R_A, R_B = range(7)

_F0 = np.float32(0.0)
_F1 = np.float32(1.0)
_F2 = np.float32(2.0)
_F255 = np.float32(255.0)
_TINY = np.float32(1e-37)  # the reference's ``img2.clip(1e-37)``
# 2 v / 255 for every uint8 v (float32, as the reference computes ``img * 2``), and the same
# clipped at 1e-37; their float64 log2 (log2 0 = -inf): the multiply step's tables.
_UNIT2 = (np.arange(256, dtype=np.float32) / _F255) * _F2
_UNIT2_TINY = np.maximum(_UNIT2, _TINY)
with np.errstate(divide="ignore"):
    _LOG2_UNIT2 = np.log2(_UNIT2.astype(np.float64))
_LOG2_UNIT2_TINY = np.log2(_UNIT2_TINY.astype(np.float64))
_SMOOTH_EDGE = np.float32(1.0) / np.float32(13.0)  # Pillow's SMOOTH kernel 1 1 1 / 1 5 1 / 1 1 1
_SMOOTH_CENTRE = np.float32(5.0) / np.float32(13.0)  # divided by 13 in float32, as Pillow does
_HALF32 = np.float32(0.5)


def _pil_rotation_matrix(degrees: int) -> tuple[float, float, float, float]:
    """The linear part (a, b, d, e) of ``PIL.Image.rotate(degrees)``, computed as Pillow does."""
    angle = -math.radians(degrees % 360.0)
    return (
        round(math.cos(angle), 15),
        round(math.sin(angle), 15),
        round(-math.sin(angle), 15),
        round(math.cos(angle), 15),
    )


MAX_ROTATE_DEG = 30
# Rotations are whole degrees (int(3 l), l < 10), so Pillow's rounded cos/sin are tabulated once.
_ROT_TABLE = np.array(
    [_pil_rotation_matrix(d) for d in range(-MAX_ROTATE_DEG, MAX_ROTATE_DEG + 1)], dtype=np.float64
)


def plan_size(k: int) -> int:
    """Length of a PixMix plan vector for at most ``k`` mixing rounds."""
    return PLAN_HEAD + PLAN_ROUND * int(k)


# ----------------------------------------------------------------------------- uint8 ops


@njit(cache=True, error_model="numpy")
def _histogram(src, hist):
    """``hist[v]`` = number of pixels equal to v. Four partial histograms, one per column
    residue mod 4, so that runs of equal pixels (an MNIST background) do not chain every
    increment on the one before (a store-to-load dependency)."""
    parts = np.zeros((4, 256), dtype=np.int32)
    w = src.shape[1]
    w4 = w - w % 4
    for y in range(src.shape[0]):
        for x in range(0, w4, 4):
            parts[0, _i64(src[y, x])] += 1
            parts[1, _i64(src[y, x + 1])] += 1
            parts[2, _i64(src[y, x + 2])] += 1
            parts[3, _i64(src[y, x + 3])] += 1
        for x in range(w4, w):
            parts[0, _i64(src[y, x])] += 1
    for v in range(256):
        hist[v] = parts[0, v] + parts[1, v] + parts[2, v] + parts[3, v]


@njit(cache=True, error_model="numpy")
def _apply_lut(src, lut, dst):
    """``dst = lut[src]`` for a uint8 ``lut`` of 256 entries."""
    for y in range(src.shape[0]):
        for x in range(src.shape[1]):
            dst[y, x] = lut[_i64(src[y, x])]


@njit(cache=True, error_model="numpy")
def _identity_lut(lut):
    for i in range(256):
        lut[i] = i


@njit(cache=True, error_model="numpy")
def autocontrast_u8(src, dst):
    """``PIL.ImageOps.autocontrast(img)`` (cutoff 0): stretch [lo, hi] to [0, 255] via
    ``int(i * 255/(hi-lo) - lo * 255/(hi-lo))`` clipped; identity if hi <= lo."""
    hist = np.empty(256, dtype=np.int64)
    lut = np.empty(256, dtype=np.uint8)
    _histogram(src, hist)
    lo = 0
    while lo < 255 and hist[lo] == 0:
        lo += 1
    hi = 255
    while hi > 0 and hist[hi] == 0:
        hi -= 1
    if hi <= lo:
        _identity_lut(lut)
    else:
        scale = 255.0 / (hi - lo)
        offset = -lo * scale
        for i in range(256):
            v = int(i * scale + offset)
            if v < 0:
                v = 0
            elif v > 255:
                v = 255
            lut[i] = v
    _apply_lut(src, lut, dst)


@njit(cache=True, error_model="numpy")
def equalize_u8(src, dst):
    """``PIL.ImageOps.equalize(img)``: step = (N - count of the highest present level) // 255;
    lut[i] = (step // 2 + #pixels below i) // step, clipped to 255 (as ``Image.point`` does);
    identity when at most one level is present or step is 0."""
    hist = np.empty(256, dtype=np.int64)
    lut = np.empty(256, dtype=np.uint8)
    _histogram(src, hist)
    present = 0
    total = 0
    last = 0
    for i in range(256):
        if hist[i] > 0:
            present += 1
            total += hist[i]
            last = hist[i]
    step = (total - last) // 255
    if present <= 1 or step == 0:
        _identity_lut(lut)
    else:
        n = step // 2
        v = 0  # = n // step, kept up to date as n grows (no division per entry)
        for i in range(256):
            while (v + 1) * step <= n:
                v += 1
            lut[i] = v if v < 255 else 255
            n += hist[i]
    _apply_lut(src, lut, dst)


@njit(cache=True, error_model="numpy")
def posterize_u8(src, bits, dst):
    """``PIL.ImageOps.posterize(img, bits)``: keep the top ``bits`` bits of every pixel."""
    shift = 8 - bits
    lut = np.empty(256, dtype=np.uint8)
    for i in range(256):
        lut[i] = (i >> shift) << shift
    _apply_lut(src, lut, dst)


@njit(cache=True, error_model="numpy")
def solarize_u8(src, threshold, dst):
    """``PIL.ImageOps.solarize(img, threshold)``: p if p < threshold else 255 - p."""
    lut = np.empty(256, dtype=np.uint8)
    for i in range(256):
        lut[i] = i if i < threshold else 255 - i
    _apply_lut(src, lut, dst)


@njit(cache=True, error_model="numpy")
def pad_edges_u8(src, pad):
    """``pad`` (H+2, W+2) = ``src`` with a one-pixel border that repeats the nearest edge pixel:
    pad[r, c] = src[clip(r - 1, 0, H - 1), clip(c - 1, 0, W - 1)]. Reading the 2x2 neighbours
    (yi, xi), (yi + 1, xi + 1) of any yi, xi in [-1, H - 1] x [-1, W - 1] from ``pad`` at
    (yi + 1, xi + 1) gives the edge-clamped values of Pillow's bilinear filter without a clamp."""
    h = src.shape[0]
    w = src.shape[1]
    for r in range(h + 2):
        sr = min(max(r - 1, 0), h - 1)
        pad[r, 0] = src[sr, 0]
        for c in range(w):
            pad[r, c + 1] = src[sr, c]
        pad[r, w + 1] = src[sr, w - 1]


@njit(cache=True, error_model="numpy", inline="always")
def _affine_inside(a, byy, c, d, eyy, f, x, w, h):
    """Pillow's test for output column ``x``: does (a (x+.5) + byy + c, d (x+.5) + eyy + f) fall
    inside [0, W) x [0, H)?"""
    xx = x + 0.5
    xin = a * xx + byy + c
    yin = d * xx + eyy + f
    return xin >= 0.0 and xin < w and yin >= 0.0 and yin < h


@njit(cache=True, error_model="numpy")
def _zero_outside(dst, y, lo, hi):
    """Fill 0 (Pillow's fill) in row ``y`` of ``dst`` outside the inside columns [lo, hi)."""
    for x in range(lo):
        dst[y, x] = 0
    for x in range(hi, dst.shape[1]):
        dst[y, x] = 0


@njit(cache=True, error_model="numpy")
def affine_bilinear_u8(src, a, b, c, d, e, f, dst):
    """``img.transform(size, Image.AFFINE, (a, b, c, d, e, f), resample=Image.BILINEAR)``, fill 0.

    Pillow's ``ImagingGenericTransform`` + ``bilinear_filter8``: output pixel (x, y) samples the
    input at (a (x+.5) + b (y+.5) + c, d (x+.5) + e (y+.5) + f); outside [0, W) x [0, H) -> 0;
    otherwise bilinear interpolation between the 2x2 neighbours of (xin - .5, yin - .5) with
    edge clamping, in float64, truncated to uint8.

    The same float64 operations in the same order as Pillow, arranged for speed:
    * the edge clamping reads from an edge-padded copy (``pad_edges_u8``), so no clamp;
    * every IEEE operation is monotonic, so the inside columns of a row form one interval
      [lo, hi), found by testing from both ends; no test between;
    * per row, one vectorised pass computes the sample points and weights, one scalar pass
      gathers the 2x2 neighbours, and one vectorised pass interpolates.
    """
    h = src.shape[0]
    w = src.shape[1]
    w2 = w + 2
    pad = np.empty((h + 2) * w2, dtype=np.uint8)
    pad_edges_u8(src, pad.reshape(h + 2, w2))
    out_w = dst.shape[1]
    rows = np.empty((6, out_w), dtype=np.float64)
    dxs, dys, p00, p01, p10, p11 = rows[0], rows[1], rows[2], rows[3], rows[4], rows[5]
    idx = np.empty(out_w, dtype=np.int64)
    for y in range(dst.shape[0]):
        byy = b * (y + 0.5)
        eyy = e * (y + 0.5)
        lo = 0  # [lo, hi): the inside columns of this row
        while lo < out_w and not _affine_inside(a, byy, c, d, eyy, f, lo, w, h):
            lo += 1
        hi = out_w
        while hi > lo and not _affine_inside(a, byy, c, d, eyy, f, hi - 1, w, h):
            hi -= 1
        _zero_outside(dst, y, lo, hi)
        n = hi - lo
        for j in range(n):
            xx = (lo + j) + 0.5
            xin = a * xx + byy + c - 0.5
            yin = d * xx + eyy + f - 0.5
            fx = np.floor(xin)  # in [-1, W - 1]: column fx + 1 of the padded image
            fy = np.floor(yin)
            dxs[j] = xin - fx
            dys[j] = yin - fy
            idx[j] = np.int64((fy + 1.0) * w2 + (fx + 1.0))
        for j in range(n):
            k = idx[j]
            p00[j] = pad[k]
            p01[j] = pad[k + 1]
            p10[j] = pad[k + w2]
            p11[j] = pad[k + w2 + 1]
        for j in range(n):
            v1 = p00[j] + (p01[j] - p00[j]) * dxs[j]
            v2 = p10[j] + (p11[j] - p10[j]) * dxs[j]
            dst[y, lo + j] = np.int64(v1 + (v2 - v1) * dys[j])


@njit(cache=True, error_model="numpy")
def translate_u8(src, tx, ty, dst):
    """``affine_bilinear_u8`` for (1, 0, tx, 0, 1, ty) with whole-pixel tx, ty: the sample
    points fall on pixel centres (dx = dy = 0), so it is an exact shift with zero fill."""
    h = src.shape[0]
    w = src.shape[1]
    for y in range(h):
        sy = y + ty
        for x in range(w):
            sx = x + tx
            if sy >= 0 and sy < h and sx >= 0 and sx < w:
                dst[y, x] = src[sy, sx]
            else:
                dst[y, x] = 0


@njit(cache=True, error_model="numpy")
def _shear_u8(src, s, vertical, dst):
    """``affine_bilinear_u8`` for a shear: (1, s, 0, 0, 1, 0) (``vertical`` False: each output
    row samples its own input row, yin = y + .5, so dy = 0) or (1, 0, 0, s, 1, 0) (True: xin =
    x + .5, dx = 0). Only one lerp remains, between the two neighbours along the sheared axis;
    the same float64 operations as the general case (1.0 * v = v and + commutes, exactly), the
    same padding, row intervals and passes."""
    h = src.shape[0]
    w = src.shape[1]
    w2 = w + 2
    pad = np.empty((h + 2) * w2, dtype=np.uint8)
    pad_edges_u8(src, pad.reshape(h + 2, w2))
    rows = np.empty((3, w), dtype=np.float64)
    frac, p0, p1 = rows[0], rows[1], rows[2]
    idx = np.empty(w, dtype=np.int64)
    slope = s if vertical else 1.0  # the sample coordinate u = slope (x + .5) + offset
    limit = h if vertical else w  # inside iff 0 <= u < limit
    # In ``pad``, sample u of output (y, x) reads row u + 1, column x + 1 (vertical) or row
    # y + 1, column u + 1 (horizontal); the other neighbour is ``step`` further on.
    step = w2 if vertical else 1
    across = 1 if vertical else 0
    for y in range(h):
        offset = (y + 0.5) if vertical else s * (y + 0.5)
        base = 1 if vertical else (y + 1) * w2
        lo = 0
        while lo < w and not (0.0 <= slope * (lo + 0.5) + offset + 0.0 < limit):
            lo += 1
        hi = w
        while hi > lo and not (0.0 <= slope * (hi - 0.5) + offset + 0.0 < limit):
            hi -= 1
        _zero_outside(dst, y, lo, hi)
        n = hi - lo
        for j in range(n):
            x = lo + j
            u = slope * (x + 0.5) + offset + 0.0 - 0.5
            fu = np.floor(u)
            frac[j] = u - fu
            idx[j] = base + np.int64(fu + 1.0) * step + x * across
        for j in range(n):
            k = idx[j]
            p0[j] = pad[k]
            p1[j] = pad[k + step]
        for j in range(n):
            dst[y, lo + j] = np.int64(p0[j] + (p1[j] - p0[j]) * frac[j])


@njit(cache=True, error_model="numpy")
def shear_x_u8(src, s, dst):
    """``affine_bilinear_u8(src, 1, s, 0, 0, 1, 0, dst)``, one lerp per pixel."""
    _shear_u8(src, s, False, dst)


@njit(cache=True, error_model="numpy")
def shear_y_u8(src, s, dst):
    """``affine_bilinear_u8(src, 1, 0, 0, s, 1, 0, dst)``, one lerp per pixel."""
    _shear_u8(src, s, True, dst)


@njit(cache=True, error_model="numpy")
def rotate_u8(src, degrees, dst):
    """``img.rotate(degrees, resample=Image.BILINEAR)`` for whole degrees in [-30, 30]:
    counter-clockwise about the centre (W/2, H/2), same size, fill 0."""
    if degrees % 360 == 0:
        dst[:, :] = src
        return
    row = degrees + MAX_ROTATE_DEG
    a = _ROT_TABLE[row, 0]
    b = _ROT_TABLE[row, 1]
    d = _ROT_TABLE[row, 2]
    e = _ROT_TABLE[row, 3]
    cx = src.shape[1] / 2.0
    cy = src.shape[0] / 2.0
    c = a * -cx + b * -cy + 0.0
    f = d * -cx + e * -cy + 0.0
    affine_bilinear_u8(src, a, b, c + cx, d, e, f + cy, dst)


@njit(cache=True, error_model="numpy")
def blend_u8(degenerate, src, alpha, dst):
    """``Image.blend(degenerate, src, alpha)`` as Pillow computes it: float32
    ``degenerate + alpha * (src - degenerate)``, truncated; clipped to [0, 255] when alpha is
    outside [0, 1]; alpha 0 / 1 copy the degenerate / source image."""
    al = np.float32(alpha)
    inside = al >= _F0 and al <= _F1
    for y in range(src.shape[0]):
        for x in range(src.shape[1]):
            if al == _F0:
                dst[y, x] = degenerate[y, x]
                continue
            if al == _F1:
                dst[y, x] = src[y, x]
                continue
            p = _i64(degenerate[y, x])
            q = _i64(src[y, x])
            t = np.float32(p) + al * np.float32(q - p)
            if inside:
                dst[y, x] = int(t)
            elif t <= _F0:
                dst[y, x] = 0
            elif t >= _F255:
                dst[y, x] = 255
            else:
                dst[y, x] = int(t)


@njit(cache=True, error_model="numpy")
def contrast_u8(src, factor, dst):
    """``ImageEnhance.Contrast(img).enhance(factor)``: blend with the constant image of
    ``int(mean + 0.5)``."""
    total = 0
    for y in range(src.shape[0]):
        for x in range(src.shape[1]):
            total += _i64(src[y, x])
    mean = int(total / (src.shape[0] * src.shape[1]) + 0.5)
    degenerate = np.empty_like(src)
    degenerate[:, :] = mean
    blend_u8(degenerate, src, factor, dst)


@njit(cache=True, error_model="numpy")
def brightness_u8(src, factor, dst):
    """``ImageEnhance.Brightness(img).enhance(factor)``: blend with a black image."""
    degenerate = np.zeros_like(src)
    blend_u8(degenerate, src, factor, dst)


@njit(cache=True, error_model="numpy")
def smooth_u8(src, dst):
    """``img.filter(ImageFilter.SMOOTH)``: 3x3 kernel (1 1 1 / 1 5 1 / 1 1 1) / 13 in float32
    with +0.5 rounding, clamped; the one-pixel border is copied unchanged (Pillow's Filter.c)."""
    h = src.shape[0]
    w = src.shape[1]
    dst[:, :] = src
    for y in range(1, h - 1):
        for x in range(1, w - 1):
            ss = _HALF32
            for dy in (1, 0, -1):
                mid = _SMOOTH_CENTRE if dy == 0 else _SMOOTH_EDGE
                row = (
                    np.float32(_i64(src[y + dy, x - 1])) * _SMOOTH_EDGE
                    + np.float32(_i64(src[y + dy, x])) * mid
                ) + np.float32(_i64(src[y + dy, x + 1])) * _SMOOTH_EDGE
                ss = ss + row
            if ss < _F0:
                ss = _F0
            if ss > _F255:
                ss = _F255
            dst[y, x] = int(ss)


@njit(cache=True, error_model="numpy")
def sharpness_u8(src, factor, dst):
    """``ImageEnhance.Sharpness(img).enhance(factor)``: blend with the SMOOTH-filtered image."""
    degenerate = np.empty_like(src)
    smooth_u8(src, degenerate)
    blend_u8(degenerate, src, factor, dst)


@njit(cache=True, error_model="numpy")
def augment_u8(src, op, level, sign, dst):
    """Apply PixMix op ``op`` (an index into ``OP_NAMES``) at ``level`` (reference scale 0..10)
    with ``sign`` (+1 / -1, used by rotate / shear / translate) to the uint8 image ``src``.

    Magnitudes as ``pixmix_utils.py`` with IMAGE_SIZE = the image width: ``int_parameter(l, m) =
    int(l * m / 10)``, ``float_parameter(l, m) = l * m / 10``.
    """
    if op == AUTOCONTRAST:
        autocontrast_u8(src, dst)
    elif op == EQUALIZE:
        equalize_u8(src, dst)
    elif op == POSTERIZE:
        posterize_u8(src, 4 - int(level * 4 / 10), dst)
    elif op == ROTATE:
        deg = min(int(level * 30 / 10), MAX_ROTATE_DEG)  # levels above 10 are not valid
        if sign < 0:
            deg = -deg
        rotate_u8(src, deg, dst)
    elif op == SOLARIZE:
        solarize_u8(src, 256 - int(level * 256 / 10), dst)
    elif op == SHEAR_X or op == SHEAR_Y:
        s = level * 0.3 / 10.0
        if sign < 0:
            s = -s
        if op == SHEAR_X:
            shear_x_u8(src, s, dst)  # = affine_bilinear_u8(src, 1, s, 0, 0, 1, 0, dst)
        else:
            shear_y_u8(src, s, dst)  # = affine_bilinear_u8(src, 1, 0, 0, s, 1, 0, dst)
    elif op == TRANSLATE_X or op == TRANSLATE_Y:
        t = int(level * (src.shape[1] / 3) / 10)
        if sign < 0:
            t = -t
        if op == TRANSLATE_X:
            translate_u8(src, t, 0, dst)  # = affine_bilinear_u8(src, 1, 0, t, 0, 1, 0, dst)
        else:
            translate_u8(src, 0, t, dst)  # = affine_bilinear_u8(src, 1, 0, 0, 0, 1, t, dst)
    elif op == CONTRAST:
        contrast_u8(src, level * 1.8 / 10.0 + 0.1, dst)
    elif op == BRIGHTNESS:
        brightness_u8(src, level * 1.8 / 10.0 + 0.1, dst)
    elif op == SHARPNESS:
        sharpness_u8(src, level * 1.8 / 10.0 + 0.1, dst)
    else:  # COLOR: identity on grayscale
        dst[:, :] = src


# ----------------------------------------------------------------------------- PixMix


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
def _u8_to_unit(src, dst):
    for y in range(src.shape[0]):
        for x in range(src.shape[1]):
            dst[y, x] = np.float32(_i64(src[y, x])) / _F255


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
    to float32 (``fastmix.fastpow``: vectorised, no libm calls): the partner's log2 from a table
    per uint8 value, the mixed image's from a table too while it still equals
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
    _u8_to_unit(start, out)
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
    or N_OPS_ALL. Parameters are validated by the caller (``fastmix.ops.PixMix``).
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


# ----------------------------------------------------------------------------- salt and pepper


@njit(cache=True, error_model="numpy")
def salt_pepper_sample(x, out, seed, epoch, index, amount):
    """Salt-and-pepper noise on one uint8 image into ``out`` (float32 in [0, 1]): per pixel one
    uint64 z; replaced iff top-53-bit uniform < amount; then 1.0 if z is odd else 0.0."""
    state = np.empty(1, dtype=np.uint64)
    state[0] = sample_state(seed, epoch, index)
    for y in range(x.shape[0]):
        for c in range(x.shape[1]):
            z = next_u64(state)
            if unit_from_u64(z) < amount:
                out[y, c] = _F1 if (z & 1) == 1 else _F0
            else:
                out[y, c] = np.float32(_i64(x[y, c])) / _F255


@njit(cache=True, parallel=True, nogil=True, error_model="numpy")
def salt_pepper_batch(images, indices, out, seed, epoch, amount):
    """Salt-and-pepper a batch: ``out[i]`` float32 (B, H, W) in [0, 1] from uint8 ``images[i]``,
    stream ``sample_state(seed, epoch, indices[i])``; prange over the batch."""
    for i in prange(images.shape[0]):
        salt_pepper_sample(images[i], out[i], seed, epoch, indices[i], amount)


# ----------------------------------------------------------------------------- plain conversion


@njit(cache=True, parallel=True, nogil=True, error_model="numpy")
def to_unit_batch(images, out):
    """``out = images / 255`` as float32 (the no-augmentation pipeline); prange over the batch."""
    for i in prange(images.shape[0]):
        _u8_to_unit(images[i], out[i])
