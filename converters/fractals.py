"""Grayscale fractal mixing pictures for PixMix: IFS chaos-game generator and image-folder import.

PixMix (Hendrycks et al., CVPR 2022) mixes each training image with a picture from a mixing set;
the official set ("fractals_and_fvis") is a download, so fastmix renders its own grayscale
fractals and can also import a folder of pictures (``load_image_folder``).

Generator (``generate_fractals``)
---------------------------------
Each picture is the attractor of a random Iterated Function System (IFS) of ``N ~ U{2,3,4}``
affine maps ``w_i(x) = A_i x + b_i``, rendered by the chaos game (Barnsley 1988,
*Fractals Everywhere*): start anywhere, repeatedly apply a map drawn with probability
``p_i ∝ |det A_i| + 0.02`` and histogram the visited points.

The maps are sampled as in Anderson & Farrell, "Improving Fractal Pre-training" (WACV 2022):
``A_i = R(theta_i) diag(s_i1, s_i2) R(phi_i) diag(±1, ±1)`` with rotations ``R``, singular values
``1 >= s_i1 >= s_i2 >= 0`` (so every map is a contraction) constrained to a "sigma factor"
``alpha = sum_i (s_i1 + 2 s_i2) ~ U((4.5 + N) / 2, (5.5 + N) / 2)``, and translations
``b_i ~ U(-1, 1)^2``. Their default alpha range is ``((5 + N) / 2, (6 + N) / 2)`` (smaller alpha:
dust; larger: filled blobs); fastmix shifts it down by 0.25 because at 32x32 pixels its upper end
renders as featureless blobs, while the coverage rejection below removes the dust the lower end
adds.

Rendering: a first pass finds the bounding box of the attractor, which is then scaled (aspect
kept) to fill ``U(0.85, 0.98)`` of a ``4 size x 4 size`` canvas; the second pass (same random
stream) histograms the points there. The counts are tone-mapped at that resolution,
``t = min(1, log(1 + c) / log(1 + c_99))`` (``c_99`` the 99th percentile of the non-zero counts),
averaged over 4x4 blocks down to ``size x size`` (supersampling antialiases thin structures),
with probability 0.2 blended with their 3x3 binomial blur at weight ``U(0.3, 0.7)``, normalised
to peak 1, raised to a gamma ``U(0.7, 1.3)`` and scaled by a brightness ``U(0.7, 1.0)`` before
rounding to uint8. A picture whose coverage (fraction of pixels above ``COVERAGE_LEVEL``) lies
outside ``[MIN_COVERAGE, MAX_COVERAGE]`` is rejected and the IFS resampled from the next sub-seed
(about 20% of first attempts are rejected, nearly all as too sparse), up to ``MAX_ATTEMPTS``
times; should all fail (odds about 0.2**64) the attempt with the best coverage is kept.

Determinism: every random number comes from a counter-based splitmix64 stream (Steele, Lea &
Flood, OOPSLA 2014; ``fastmix.rng``) keyed by ``(seed, image index, attempt)``, so a picture
depends only on those and never on the Numba thread count, the chunking or ``start``. Bump
``GENERATOR_VERSION`` whenever the output for a given seed changes.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from numba import njit, prange

from fastmix.errors import ConfigError, DataError
from fastmix.files import atomic_write
from fastmix.rng import GAMMA, MASK64, _u64, mix, next_uniform

GENERATOR_VERSION = "ifs-chaos-1"

SUPERSAMPLE = 4
"""Render at ``SUPERSAMPLE * size`` per side, tone-map there, then box-average down."""
COVERAGE_LEVEL = 16
"""Grey level (uint8) a pixel must exceed to count as covered."""
MIN_COVERAGE = 0.15
MAX_COVERAGE = 0.85
MAX_ATTEMPTS = 64
BURN_IN = 64
"""Chaos-game iterations discarded before points are recorded."""
BBOX_POINTS = 4096
"""Points of the first (bounding-box) pass; the second pass replays the same stream."""

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")

_CHUNK = 512

# --- random streams (splitmix64 from fastmix.rng) ----------------------------------------------

_SEED_SALT = 0xD1B54A32D192ED03
"""Odd constant that separates the per-image and per-attempt stream keys."""


@njit(cache=True)
def _attempt_state(seed_key, index, attempt):
    """Stream start for (seed, image index, attempt): nested hashes, so streams never overlap."""
    k = mix(_u64(seed_key) ^ mix((_u64(index) * GAMMA + _SEED_SALT) & MASK64))
    return mix((k + _u64(attempt + 1) * _SEED_SALT) & MASK64)


# --- IFS sampling -------------------------------------------------------------------------------


@njit(cache=True)
def _sample_ifs(state, maps, cum_p):
    """Sample a contractive IFS into maps[:n] = (a11, a12, a21, a22, b1, b2) and the cumulative
    map probabilities cum_p[:n]. Returns (state, n).

    Singular values follow Anderson & Farrell (WACV 2022): pair i takes s1 in [lo, hi] where the
    bounds keep the remaining weighted sum reachable by the remaining maps (each adds 0..3).
    """
    state, u = next_uniform(state)
    n = 2 + int(u * 3.0)
    state, u = next_uniform(state)
    alpha = (4.5 + n) / 2.0 + u
    budget = alpha  # weighted sum s1 + 2 s2 still to hand out
    excess = alpha - 3.0 * (n - 1)  # part of the budget the later maps cannot absorb
    svals = np.empty((n, 2))
    for i in range(n - 1):
        lo = max(0.0, excess / 3.0)
        hi = min(1.0, budget)
        state, u = next_uniform(state)
        s1 = lo + (hi - lo) * u
        budget -= s1
        excess -= s1
        lo = max(0.0, excess / 2.0)
        hi = min(s1, budget / 2.0)
        state, u = next_uniform(state)
        s2 = lo + (hi - lo) * u
        budget -= 2.0 * s2
        excess = excess - 2.0 * s2 + 3.0
        svals[i, 0] = s1
        svals[i, 1] = s2
    lo = max(0.0, (budget - 1.0) / 2.0)
    hi = budget / 3.0
    state, u = next_uniform(state)
    s2 = lo + (hi - lo) * u
    svals[n - 1, 0] = budget - 2.0 * s2
    svals[n - 1, 1] = s2

    total = 0.0
    for i in range(n):
        state, u = next_uniform(state)
        theta = (2.0 * u - 1.0) * math.pi
        state, u = next_uniform(state)
        phi = (2.0 * u - 1.0) * math.pi
        state, u = next_uniform(state)
        d1 = 1.0 if u < 0.5 else -1.0
        state, u = next_uniform(state)
        d2 = 1.0 if u < 0.5 else -1.0
        ct, st = math.cos(theta), math.sin(theta)
        cp, sp = math.cos(phi), math.sin(phi)
        s1, s2 = svals[i, 0], svals[i, 1]
        # M = diag(s1, s2) R(phi) diag(d1, d2); A = R(theta) M
        m11 = s1 * cp * d1
        m12 = -s1 * sp * d2
        m21 = s2 * sp * d1
        m22 = s2 * cp * d2
        maps[i, 0] = ct * m11 - st * m21
        maps[i, 1] = ct * m12 - st * m22
        maps[i, 2] = st * m11 + ct * m21
        maps[i, 3] = st * m12 + ct * m22
        state, u = next_uniform(state)
        maps[i, 4] = 2.0 * u - 1.0
        state, u = next_uniform(state)
        maps[i, 5] = 2.0 * u - 1.0
        w = s1 * s2 + 0.02  # |det A_i| + floor: small maps still get points
        total += w
        cum_p[i] = total
    for i in range(n):
        cum_p[i] /= total
    cum_p[n - 1] = 1.0
    return state, n


@njit(cache=True)
def _pick(cum_p, n, u):
    for k in range(n - 1):
        if u < cum_p[k]:
            return k
    return n - 1


# --- rendering ----------------------------------------------------------------------------------


@njit(cache=True, inline="always")
def _chaos_step(state, maps, cum_p, n, x, y):
    """One chaos-game step: pick map k with probability p_k, return (state, w_k(x, y))."""
    state, u = next_uniform(state)
    k = _pick(cum_p, n, u)
    xn = maps[k, 0] * x + maps[k, 1] * y + maps[k, 4]
    yn = maps[k, 2] * x + maps[k, 3] * y + maps[k, 5]
    return state, xn, yn


@njit(cache=True)
def _tone_map(hist, img):
    """Supersampled hit counts -> img (box-averaged): log(1 + c) / log(1 + c99), clipped to 1.
    False when no point landed inside."""
    hs = hist.shape[0]
    nz = 0
    for r in range(hs):
        for c in range(hs):
            if hist[r, c] > 0:
                nz += 1
    if nz == 0:
        return False
    vals = np.empty(nz, np.int32)
    j = 0
    for r in range(hs):
        for c in range(hs):
            if hist[r, c] > 0:
                vals[j] = hist[r, c]
                j += 1
    vals.sort()
    c99 = vals[min(nz - 1, int(0.99 * nz))]
    denom = math.log1p(max(c99, 1))

    img[:, :] = 0.0
    inv_block = 1.0 / (SUPERSAMPLE * SUPERSAMPLE)
    for r in range(hs):
        for c in range(hs):
            cnt = hist[r, c]
            if cnt > 0:
                t = math.log1p(cnt) / denom
                if t > 1.0:
                    t = 1.0
                img[r // SUPERSAMPLE, c // SUPERSAMPLE] += t * inv_block
    return True


@njit(cache=True)
def _blend_blur(img, w_blur):
    """img <- (1 - w) img + w (3x3 binomial blur of img), edges clamped."""
    size = img.shape[0]
    src = img.copy()
    for r in range(size):
        for c in range(size):
            acc = 0.0
            for dr in range(-1, 2):
                rr = min(max(r + dr, 0), size - 1)
                wr = 2.0 if dr == 0 else 1.0
                for dc in range(-1, 2):
                    cc = min(max(c + dc, 0), size - 1)
                    wc = 2.0 if dc == 0 else 1.0
                    acc += wr * wc * src[rr, cc]
            img[r, c] = (1.0 - w_blur) * src[r, c] + w_blur * acc / 16.0


@njit(cache=True)
def _render_attempt(state, size, points, hist, img):
    """Render one random IFS into img (float64, size x size, values in [0, 1]). Returns coverage
    (fraction of pixels whose uint8 value exceeds COVERAGE_LEVEL); img is left final-scaled."""
    maps = np.empty((4, 6))
    cum_p = np.empty(4)
    state, n = _sample_ifs(state, maps, cum_p)
    hs = size * SUPERSAMPLE

    # pass 1: bounding box of the attractor
    s0 = state
    x = 0.0
    y = 0.0
    xmin = 1e300
    xmax = -1e300
    ymin = 1e300
    ymax = -1e300
    n1 = min(points, BBOX_POINTS)
    for it in range(BURN_IN + n1):
        state, x, y = _chaos_step(state, maps, cum_p, n, x, y)
        if it >= BURN_IN:
            xmin = min(xmin, x)
            xmax = max(xmax, x)
            ymin = min(ymin, y)
            ymax = max(ymax, y)
    extent = max(xmax - xmin, ymax - ymin)
    if not (extent > 1e-9) or not (extent < 1e9):
        return 0.0
    state, u = next_uniform(state)
    fill = 0.85 + 0.13 * u
    scale = fill * hs / extent
    cx = 0.5 * (xmin + xmax)
    cy = 0.5 * (ymin + ymax)
    half = 0.5 * hs
    # randomness for the tone map is drawn now (pass 2 replays from s0)
    state, u_blur = next_uniform(state)
    state, u_gamma = next_uniform(state)
    state, u_bright = next_uniform(state)

    # pass 2: histogram
    hist[:, :] = 0
    state = s0
    x = 0.0
    y = 0.0
    for it in range(BURN_IN + points):
        state, x, y = _chaos_step(state, maps, cum_p, n, x, y)
        if it >= BURN_IN:
            col = int(math.floor((x - cx) * scale + half))
            row = int(math.floor((y - cy) * scale + half))
            if 0 <= row < hs and 0 <= col < hs:
                hist[row, col] += 1

    if not _tone_map(hist, img):
        return 0.0
    if u_blur < 0.2:  # mild blur: blend with a 3x3 binomial blur (edges clamped), w in [0.3, 0.7)
        _blend_blur(img, 0.3 + 2.0 * u_blur)

    peak = 0.0
    for r in range(size):
        for c in range(size):
            peak = max(peak, img[r, c])
    if not (peak > 0.0):
        return 0.0
    gamma = 0.7 + 0.6 * u_gamma
    bright = 0.7 + 0.3 * u_bright
    covered = 0
    for r in range(size):
        for c in range(size):
            v = bright * (img[r, c] / peak) ** gamma
            img[r, c] = v
            if int(v * 255.0 + 0.5) > COVERAGE_LEVEL:
                covered += 1
    return covered / (size * size)


@njit(cache=True, parallel=True)
def _generate_kernel(out, seed_key, start, points):
    """Fill out[j] with the fractal for image index start + j (independent per image)."""
    n = out.shape[0]
    size = out.shape[1]
    hs = size * SUPERSAMPLE
    for j in prange(n):
        hist = np.empty((hs, hs), np.int32)
        img = np.empty((size, size))
        best = np.zeros((size, size))
        best_cov = -1.0
        for attempt in range(MAX_ATTEMPTS):
            state = _attempt_state(seed_key, start + j, attempt)
            cov = _render_attempt(state, size, points, hist, img)
            if MIN_COVERAGE <= cov <= MAX_COVERAGE:
                best[:, :] = img
                break
            # fallback bookkeeping: prefer the attempt closest to the accepted range
            score = cov if cov < MIN_COVERAGE else 2.0 * MAX_COVERAGE - cov
            if score > best_cov:
                best_cov = score
                best[:, :] = img
        for r in range(size):
            for c in range(size):
                out[j, r, c] = np.uint8(min(255, int(best[r, c] * 255.0 + 0.5)))


def default_points(size: int) -> int:
    """Chaos-game points per picture: 40 per output pixel (about 2.5 per supersampled pixel)."""
    return 40 * size * size


def _seed_key(seed: int) -> np.uint64:
    return np.uint64(int(mix(np.uint64(seed & MASK64))))


def generate_fractals(
    n: int,
    size: int = 32,
    seed: int = 0,
    points: int | None = None,
    progress: bool = False,
    start: int = 0,
) -> np.ndarray:
    """Render ``n`` grayscale IFS fractals, uint8 of shape (n, size, size).

    Picture ``j`` of the result is picture ``start + j`` of the stream for ``seed``: it depends
    only on (seed, start + j, points, size, GENERATOR_VERSION), not on the thread count or on how
    the range is split over calls. ``seed`` is any integer (taken modulo 2**64); ``points``
    defaults to ``default_points(size)``. See the module
    docstring for the algorithm (Barnsley's chaos game; maps sampled as in Anderson & Farrell,
    WACV 2022).
    """
    for name, value, low in (("n", n, 0), ("size", size, 8), ("start", start, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ConfigError(
                f"generate_fractals: {name} must be an integer >= {low}, got {value!r}"
            )
    if points is None:
        points = default_points(int(size))
    if isinstance(points, bool) or not isinstance(points, (int, np.integer)) or points < 256:
        raise ConfigError(f"generate_fractals: points must be an integer >= 256, got {points!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise ConfigError(f"generate_fractals: seed must be an integer, got {seed!r}")
    n, size, start, points = int(n), int(size), int(start), int(points)
    out = np.empty((n, size, size), np.uint8)
    key = _seed_key(int(seed))
    chunks = range(0, n, _CHUNK)
    if progress:
        from tqdm import tqdm

        chunks = tqdm(chunks, total=math.ceil(n / _CHUNK), desc="fractals", unit="chunk")
    for lo in chunks:
        hi = min(n, lo + _CHUNK)
        _generate_kernel(out[lo:hi], key, np.int64(start + lo), np.int64(points))
    return out


# --- image-folder import ------------------------------------------------------------------------


def _is_inside(path: str, root_real: str) -> bool:
    real = os.path.realpath(path)
    return os.path.commonpath([real, root_real]) == root_real


def _list_image_files(root: Path) -> list[Path]:
    """Image files under root, recursive, sorted by relative path. Hidden files and folders
    (names starting with '.') are skipped, folder symlinks are not descended into and file
    symlinks resolving outside root are skipped."""
    root_real = os.path.realpath(root)
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith(".") or not name.lower().endswith(IMAGE_EXTENSIONS):
                continue
            path = os.path.join(dirpath, name)
            if os.path.islink(path) and not _is_inside(path, root_real):
                continue
            rel = os.path.relpath(path, root)
            found.append((Path(rel).as_posix(), Path(path)))
    found.sort(key=lambda t: t[0])
    return [p for _, p in found]


def _resize_center_crop(im, size: int):
    """Resize so the shorter side is ``size`` (long side ``round(size * long / short)``, BICUBIC),
    then take the centred ``size x size`` crop (offset ``(new - size) // 2``)."""
    from PIL import Image

    w, h = im.size
    if w <= h:
        nw, nh = size, max(size, round(h * size / w))
    else:
        nw, nh = max(size, round(w * size / h)), size
    if (nw, nh) != (w, h):
        im = im.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    return im.crop((left, top, left + size, top + size))


def load_image_folder(folder: str | os.PathLike, size: int = 32) -> np.ndarray:
    """Import a folder of pictures (e.g. the official PixMix fractal set) as uint8 (n, size, size).

    Files ending in .png/.jpg/.jpeg/.bmp/.gif/.webp (any case) are read recursively in sorted
    relative-path order; other files and hidden names are ignored. Each picture is converted to
    grayscale (PIL "L": ``L = (299 R + 587 G + 114 B) / 1000``; first frame of an animation),
    resized so its shorter side is ``size`` (BICUBIC) and centre-cropped. Symlinks resolving
    outside the folder are skipped and folder symlinks are not followed.

    Raises DataError naming the folder when it is missing or holds no pictures, and naming every
    file that cannot be decoded (all of them are collected first, so one run lists every fault).
    """
    from PIL import Image

    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ConfigError(f"load_image_folder: size must be a positive integer, got {size!r}")
    size = int(size)
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (load_image_folder needs a folder of pictures)")
    files = _list_image_files(root)
    if not files:
        raise DataError(
            f"{root}: no pictures found (looked recursively for {', '.join(IMAGE_EXTENSIONS)})"
        )
    out = np.empty((len(files), size, size), np.uint8)
    bad: list[str] = []
    for i, path in enumerate(files):
        if path.exists() and not path.is_file():  # a FIFO would block open() forever
            bad.append(f"{path}: not a regular file")
            continue
        try:
            with Image.open(path) as im:
                gray = im.convert("L")
            out[i] = np.asarray(_resize_center_crop(gray, size), dtype=np.uint8)
        except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
            bad.append(f"{path}: {type(e).__name__}: {e}")
    if bad:
        shown = "\n  ".join(bad[:20])
        more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
        raise DataError(
            f"{root}: {len(bad)} of {len(files)} picture files cannot be read:\n  {shown}{more}"
        )
    return out


# --- preview ------------------------------------------------------------------------------------


def fractal_preview(
    images: np.ndarray, out_path: str | os.PathLike, n: int = 64, scale: int = 3
) -> Path:
    """Write the first ``n`` pictures as a PNG grid (``ceil(sqrt(n))`` columns, each tile
    upscaled ``scale`` times, nearest neighbour, grey 2-pixel gutters), atomically
    (``fastmix.files.atomic_write``: readers never see a partial PNG). Returns the path."""
    from PIL import Image

    images = np.asarray(images)
    if images.ndim != 3 or images.dtype != np.uint8 or len(images) == 0:
        raise DataError(
            f"fractal_preview: images must be a non-empty uint8 (N, H, W) array, got "
            f"{images.dtype} {images.shape}"
        )
    k = min(int(n), len(images))
    if k < 1:
        raise ConfigError(f"fractal_preview: n must be >= 1, got {n!r}")
    cols = math.ceil(math.sqrt(k))
    rows = math.ceil(k / cols)
    h, w = images.shape[1] * scale, images.shape[2] * scale
    gap = 2
    canvas = np.full((rows * (h + gap) + gap, cols * (w + gap) + gap), 96, np.uint8)
    for i in range(k):
        r, c = divmod(i, cols)
        tile = np.repeat(np.repeat(images[i], scale, axis=0), scale, axis=1)
        y, x = gap + r * (h + gap), gap + c * (w + gap)
        canvas[y : y + h, x : x + w] = tile
    return atomic_write(out_path, lambda f: Image.fromarray(canvas).save(f, format="PNG"))
