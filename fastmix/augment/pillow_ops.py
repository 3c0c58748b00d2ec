"""Pillow-exact uint8 image ops for PixMix's ``augment`` (Numba, one image at a time).

Each op reproduces Pillow on mode "L" images bit for bit (tested against Pillow):
``ImageOps`` autocontrast (cutoff 0) / equalize (Pillow's histogram step) / posterize / solarize,
``Image.rotate`` and ``Image.transform(AFFINE)`` with ``resample=Image.BILINEAR`` and fill 0 --
the PixMix reference (andyzoujm/pixmix ``pixmix_utils.py``) passes BILINEAR to every geometric
op, so this is Pillow's bilinear filter, not its NEAREST default; AFFINE data (a, b, c, d, e, f)
maps output pixel centre (x, y) to input (a x + b y + c, d x + e y + f) -- and ``ImageEnhance``
contrast / brightness / sharpness (Pillow's float32 blend and 3x3 SMOOTH filter).

``augment_u8`` applies ONE op by id (``OP_NAMES``): autocontrast, equalize, posterize, rotate,
solarize, shear_x, shear_y, translate_x, translate_y, and with ``all_ops`` also color, contrast,
brightness, sharpness. ``color`` is kept as an identity op (PIL's Color enhancer is a no-op on a
grayscale image) so that the op frequencies stay those of the reference's all-ops list.
Magnitudes at level ``l`` (the reference's scale 0..10), SIZE = the image width: rotate ``int(3 l)``
degrees, shear ``0.03 l``, translate ``int(l * (SIZE / 3) / 10)`` px (each with a random sign),
posterize ``4 - int(0.4 l)`` bits, solarize threshold ``256 - int(25.6 l)``, enhance factor
``0.18 l + 0.1``.

``@njit(cache=True, error_model="numpy")``: compiled once into Numba's disk cache; no Python
ZeroDivisionError checks (they block vectorisation; no divisor here can be zero). Every op also
runs with ``NUMBA_DISABLE_JIT=1`` with bit-identical results (tested).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from fastmix.rng import _i64

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
N_OPS_BASIC = 9  # andyzoujm/pixmix's default ``augmentations``
N_OPS_ALL = 13  # ``--all-ops``: + color, contrast, brightness, sharpness

_F0 = np.float32(0.0)
_F1 = np.float32(1.0)
_F2 = np.float32(2.0)
_F255 = np.float32(255.0)
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
