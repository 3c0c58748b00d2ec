"""Tests of converters/mnist_c.py: the 15 MNIST-C corruptions and the official-data import.

References are computed here independently (scipy.ndimage.map_coordinates for the warps,
colorsys for brightness, Poisson sums for shot noise, np.roll for translation).
"""

from __future__ import annotations

import colorsys
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
from fastmix.converters import mnist_c as mc
from fastmix.converters.idx import read_idx_images
from PIL import Image
from scipy import ndimage

from fastmix.errors import DataError
from tests.conftest import run_python

RANDOM = {
    "shot_noise",
    "impulse_noise",
    "glass_blur",
    "motion_blur",
    "shear",
    "rotate",
    "translate",
    "fog",
    "spatter",
    "dotted_line",
    "zigzag",
}
FIXED = set(mc.CORRUPTIONS) - RANDOM


def synthetic_digits(n: int, seed: int = 0) -> np.ndarray:
    """Digit-like binary images (0 / 255): a thick-walled box ("0") plus a diagonal stroke,
    at a random place at least 5 px from the border."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):
        r0, c0 = rng.integers(5, 9), rng.integers(6, 10)
        h, w = rng.integers(11, 15), rng.integers(8, 12)
        out[i, r0 : r0 + h, c0 : c0 + w] = 255
        out[i, r0 + 3 : r0 + h - 3, c0 + 3 : c0 + w - 3] = 0
        for t in range(12):
            c = c0 + w // 2 + (t - 6) // 3
            out[i, r0 + t : r0 + t + 2, c : c + 2] = 255
    return out


@pytest.fixture(scope="module")
def mnist(shared_data) -> np.ndarray:
    """The first 64 MNIST test digits."""
    return read_idx_images(shared_data / "mnist" / "t10k-images-idx3-ubyte.gz")[:64]


@pytest.fixture(scope="module", params=["synthetic", "mnist"])
def digits(request) -> np.ndarray:
    if request.param == "synthetic":
        return synthetic_digits(32)
    return request.getfixturevalue("mnist")[:32]


# --- generic properties --------------------------------------------------------------------


def test_names_and_version():
    assert mc.CORRUPTIONS == (
        "shot_noise",
        "impulse_noise",
        "glass_blur",
        "motion_blur",
        "shear",
        "scale",
        "rotate",
        "brightness",
        "translate",
        "stripe",
        "fog",
        "spatter",
        "dotted_line",
        "zigzag",
        "canny_edges",
    )
    assert isinstance(mc.GENERATOR_VERSION, str) and mc.GENERATOR_VERSION


@pytest.mark.parametrize("name", mc.CORRUPTIONS)
def test_dtype_shape_determinism(name, digits):
    before = digits.copy()
    a = mc.corrupt(digits, name, seed=7)
    b = mc.corrupt(digits, name, seed=7)
    c = mc.corrupt(digits, name, seed=8)
    np.testing.assert_array_equal(digits, before)  # input untouched
    assert a.dtype == np.uint8 and a.shape == digits.shape  # one image out per image in
    np.testing.assert_array_equal(a, b)
    if name in RANDOM:
        assert not np.array_equal(a, c)
    else:
        np.testing.assert_array_equal(a, c)
    assert not np.array_equal(a, digits)


@pytest.mark.parametrize("name", mc.CORRUPTIONS)
def test_independent_of_chunking(name):
    x = synthetic_digits(mc.CHUNK + 60, seed=1)
    full = mc.corrupt(x, name, seed=3)
    parts = [
        mc.corrupt(x[a:b], name, seed=3, start=a)
        for a, b in ((0, 5), (5, 200), (200, mc.CHUNK + 30), (mc.CHUNK + 30, len(x)))
    ]
    np.testing.assert_array_equal(np.concatenate(parts), full)


def test_empty_and_bad_inputs():
    assert mc.corrupt(np.zeros((0, 28, 28), np.uint8), "fog", 0).shape == (0, 28, 28)
    with pytest.raises(ValueError, match="unknown MNIST-C corruption"):
        mc.corrupt(synthetic_digits(2), "snow", 0)
    with pytest.raises(ValueError, match="seed"):
        mc.corrupt(synthetic_digits(2), "fog", -1)
    with pytest.raises(DataError, match="uint8"):
        mc.corrupt(np.zeros((2, 28, 28), np.float32), "fog", 0)
    with pytest.raises(DataError, match="28"):
        mc.corrupt(np.zeros((2, 32, 32), np.uint8), "fog", 0)


# --- individual corruptions ---------------------------------------------------------------


def test_stripe_inverts_outer_columns(digits):
    y = mc.corrupt(digits, "stripe", 0)
    outer = list(range(0, 7)) + list(range(21, 28))
    np.testing.assert_array_equal(y[:, :, outer], 255 - digits[:, :, outer])
    np.testing.assert_array_equal(y[:, :, 7:21], digits[:, :, 7:21])


def test_translate_is_an_exact_3px_shift():
    x = np.zeros((64, 28, 28), np.uint8)
    x[:, 8:20, 9:19] = synthetic_digits(64)[:, 8:20, 9:19]  # content >= 3 px from every border
    y = mc.corrupt(x, "translate", seed=11)
    seen = set()
    for xi, yi in zip(x, y, strict=True):
        hits = [
            (dr, dc)
            for dr in (-3, 3)
            for dc in (-3, 3)
            if np.array_equal(yi, np.roll(xi, (dr, dc), axis=(0, 1)))
        ]
        assert len(hits) == 1
        seen.add(hits[0])
    assert seen == {(-3, -3), (-3, 3), (3, -3), (3, 3)}


def reference_warp(img: np.ndarray, col_in, row_in) -> np.ndarray:
    """Bilinear sampling at (row_in, col_in), zero outside: scipy map_coordinates."""
    return ndimage.map_coordinates(
        img.astype(np.float64), [row_in, col_in], order=1, mode="grid-constant", cval=0.0
    )


def inverse_coords(kind: str, v: float):
    r, c = np.mgrid[0:28, 0:28].astype(np.float64)
    u, w = c - 13.5, r - 13.5
    if kind == "rotate":
        return 13.5 + math.cos(v) * u - math.sin(v) * w, 13.5 + math.sin(v) * u + math.cos(v) * w
    if kind == "shear":  # skimage (<= 0.18) AffineTransform(shear=v): [[1, -sin v], [0, cos v]]
        return 13.5 + u - math.sin(v) * w, 13.5 + math.cos(v) * w
    return 13.5 + u * v, 13.5 + w * v  # scale


@pytest.mark.parametrize(
    "kind,values", [("rotate", (0.4, -0.4)), ("shear", (0.4, -0.4)), ("scale", (1 / 0.7,))]
)
def test_affine_matches_independent_warp(kind, values, digits):
    """Agreement within 1 grey level (float rounding at .5 boundaries), per image one sign."""
    y = mc.corrupt(digits, kind, seed=5).astype(int)
    used = set()
    for xi, yi in zip(digits, y, strict=True):
        errs = {
            v: np.abs(np.clip(reference_warp(xi, *inverse_coords(kind, v)), 0, 255) - yi).max()
            for v in values
        }
        best = min(errs, key=errs.get)
        assert errs[best] <= 1.0, errs
        used.add(best)
    assert used == set(values)


def test_scale_shrinks_towards_centre():
    x = np.zeros((1, 28, 28), np.uint8)
    x[0, 4:24, 4:24] = 255
    y = mc.corrupt(x, "scale", 0)[0]
    rows = np.nonzero(y.max(axis=1) > 127)[0]
    assert rows.min() == 7 and rows.max() == 20  # 13.5 +- 0.7 * 10 (edges at 3.5 .. 23.5)


def test_impulse_noise_fraction_and_balance():
    x = np.full((200, 28, 28), 128, np.uint8)
    y = mc.corrupt(x, "impulse_noise", seed=2)
    changed = y != x
    assert abs(changed.mean() - 0.17) < 0.005
    assert set(np.unique(y[changed])) <= {0, 255}
    salt = (y[changed] == 255).mean()
    assert abs(salt - 0.5) < 0.02


def expected_shot_mean(v: int) -> float:
    """255/3 E[min(X, 3)] for X ~ Poisson(3 v / 255)."""
    lam = 3 * v / 255
    p = [math.exp(-lam) * lam**k / math.factorial(k) for k in range(3)]
    return 85 * (sum(k * pk for k, pk in enumerate(p)) + 3 * (1 - sum(p)))


@pytest.mark.parametrize("v", [40, 128, 200])
def test_shot_noise_mean(v):
    x = np.full((100, 28, 28), v, np.uint8)
    y = mc.corrupt(x, "shot_noise", seed=4)
    assert set(np.unique(y)) <= {0, 85, 170, 255}
    assert abs(y.mean() - expected_shot_mean(v)) < 0.8  # sd of the mean ~ 0.2
    if v == 40:  # clipping at 255 is negligible: the mean is kept
        assert abs(y.mean() - v) < 1.5


def boundary(img: np.ndarray) -> np.ndarray:
    """Pixels whose on/off state (> 127) differs from one of their 4-neighbours."""
    on = img > 127
    b = np.zeros_like(on)
    b[1:] |= on[1:] != on[:-1]
    b[:-1] |= on[1:] != on[:-1]
    b[:, 1:] |= on[:, 1:] != on[:, :-1]
    b[:, :-1] |= on[:, 1:] != on[:, :-1]
    return b


def test_canny_edges_lie_on_the_digit_border(digits):
    y = mc.corrupt(digits, "canny_edges", 0)
    assert set(np.unique(y)) <= {0, 255}
    for xi, yi in zip(digits, y, strict=True):
        assert (yi > 0).sum() > 10
        near = ndimage.binary_dilation(boundary(xi), iterations=2)  # within 2 px (chessboard)
        assert near[yi > 0].all()
    assert not mc.corrupt(np.zeros((1, 28, 28), np.uint8), "canny_edges", 0).any()


def test_canny_outline_of_a_square():
    x = np.zeros((1, 28, 28), np.uint8)
    x[0, 8:20, 8:20] = 255
    y = mc.corrupt(x, "canny_edges", 0)[0] > 0
    assert y[8:20, 7:9].any(axis=1).all() and y[8:20, 19:21].any(axis=1).all()
    assert not y[11:17, 11:17].any()  # nothing inside


def test_brightness_matches_hsv(digits):
    lut = []
    for v in range(256):
        h, s, val = colorsys.rgb_to_hsv(v / 255, v / 255, v / 255)
        r, g, b = colorsys.hsv_to_rgb(h, s, min(val + 0.5, 1.0))
        lut.append((0.2125 * r + 0.7154 * g + 0.0721 * b) * 255)
    expected = np.asarray(lut)[digits]
    y = mc.corrupt(digits, "brightness", 0)
    assert np.abs(y - expected).max() <= 0.5 + 1e-9
    assert y.mean() > digits.mean() + 100


@pytest.mark.parametrize("name", ["fog", "spatter"])
def test_fog_and_spatter_change_the_background(name, digits):
    y = mc.corrupt(digits, name, seed=9)
    bg = digits == 0
    per_image = [(yi[b] != 0).mean() for yi, b in zip(y, bg, strict=True)]
    if name == "fog":
        assert min(per_image) > 0.9
        fg = digits > 200  # the digit stays brighter than its surroundings on average
        gaps = [yi[f].mean() - yi[b].mean() for yi, f, b in zip(y, fg, bg, strict=True)]
        assert np.mean(gaps) > 20
    else:
        assert np.mean([p > 0 for p in per_image]) > 0.25
        mud = y[bg & (y != 0)]
        assert mud.max() <= 63  # mud colour 63 blended over black


def test_motion_blur_spreads_a_dot_along_a_line():
    x = np.zeros((24, 28, 28), np.uint8)
    x[:, 14, 20] = 255
    y = mc.corrupt(x, "motion_blur", seed=1)
    for yi in y:
        r, c = np.nonzero(yi)
        assert len(r) >= 5 and (c.max() - c.min()) >= 5
        assert abs(int(yi.sum()) - 255) <= len(r)  # weights sum to 1 (truncation per pixel)
        assert c.max() == 20 and c.min() < 20  # one-sided streak (ImageMagick), to the left
        pts = np.stack([r, c], 1).astype(float)
        pts -= pts.mean(0)
        sv = np.linalg.svd(pts, compute_uv=False)
        assert sv[1] < 0.25 * sv[0]  # collinear
        slope = abs(np.polyfit(c, r, 1)[0])
        assert slope <= 1.1  # angle within +-45 degrees


def test_motion_kernel_taps():
    w, dy, dx = mc.motion_kernel(np.array([0.0, 45.0, -37.0]))
    assert w.shape == (21,) and abs(w.sum() - 1) < 1e-12 and np.all(np.diff(w) < 0)
    np.testing.assert_array_equal(dy[0], 0)
    np.testing.assert_array_equal(dx[0], np.arange(21))
    np.testing.assert_array_equal(dx[1], dy[1])
    i = np.arange(21)
    np.testing.assert_array_equal(dy[2], np.rint(i * math.sin(math.radians(-37.0))))
    np.testing.assert_array_equal(dx[2], np.rint(i * math.cos(math.radians(-37.0))))


def test_glass_blur_keeps_mean_and_blurs(digits):
    y = mc.corrupt(digits, "glass_blur", seed=6).astype(float)
    x = digits.astype(float)
    assert abs(y.mean() - x.mean()) < 0.05 * x.mean()  # truncation loses < 1 level per pixel
    assert (y > 0).sum() > 1.2 * (x > 0).sum()  # content spreads
    assert (y == 255).sum() < 0.5 * (x == 255).sum()


def test_glass_blur_without_swaps_is_two_vertical_gaussians(digits):
    """With no swap drawn: G(uint8(G(x / 255) * 255) / 255) * 255, G a Gaussian along rows only
    (sigma 0.7, edge mode 'nearest'), as skimage's multichannel=True does to a 2-D image."""
    p = mc._draw_glass(np.random.default_rng(0), len(digits))
    p["swap"][:] = False
    y = mc.glass_blur(digits, p)
    g = lambda a: ndimage.gaussian_filter(a, sigma=(0, 0.7, 0), mode="nearest")  # noqa: E731
    ref = g((g(digits / 255.0) * 255).astype(np.uint8) / 255.0) * 255
    assert np.abs(y - ref).max() <= 0.5 + 1e-9


@pytest.mark.parametrize("name", ["dotted_line", "zigzag"])
def test_lines_add_bright_pixels_to_black(name):
    x = np.zeros((40, 28, 28), np.uint8)
    y = mc.corrupt(x, name, seed=12)
    for yi in y:
        cols = np.nonzero(yi.max(axis=0) > 0)[0]
        assert (yi > 0).sum() >= 10 and yi.max() >= 250
        if name == "dotted_line":  # dashes: columns 2-3, 6-7, ..., 26 only
            assert set(cols) <= {c for c in range(27) if (c // 2) % 2 == 1}
        else:
            assert cols.min() >= 2 and cols.max() <= 26


def test_lines_add_to_digits(digits):
    for name in ("dotted_line", "zigzag"):
        y = mc.corrupt(digits, name, 0)
        assert np.all(y >= digits)


# --- Numba kernels: compiled vs pure Python ----------------------------------------------


def test_jit_parity_glass_swaps():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (2, 28, 28), dtype=np.uint8)
    p = mc._draw_glass(rng, 2)
    a, b = img.copy(), img.copy()
    mc._glass_swaps(a, p["swap"], p["dy"], p["dx"])
    mc._glass_swaps.py_func(b, p["swap"], p["dy"], p["dx"])
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, img) and np.array_equal(np.sort(a, None), np.sort(img, None))


def test_jit_parity_motion_blur():
    x = synthetic_digits(2)
    w, dy, dx = mc.motion_kernel(np.array([17.0, -33.0]))
    a, b = np.empty(x.shape), np.empty(x.shape)
    mc._motion_blur_apply(x, w, dy, dx, a)
    mc._motion_blur_apply.py_func(x, w, dy, dx, b)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-9)


def test_jit_parity_plasma(tmp_path):
    """A pure-Python run (NUMBA_DISABLE_JIT=1, subprocess) of the diamond-square kernel, its
    splitmix64 steps included, equals the compiled one exactly (no libm, no fastmath)."""
    keys = [99, 2**63, 2**64 - 1]
    jit = mc.plasma_fractal(np.array(keys, np.uint64), mapsize=32, size=20)
    out = tmp_path / "nojit.npy"
    run_python(
        "import sys\n"
        "import numpy as np\n"
        "from fastmix.converters import mnist_c as mc\n"
        f"keys = np.array({keys!r}, np.uint64)\n"
        "np.save(sys.argv[1], mc.plasma_fractal(keys, mapsize=32, size=20))\n",
        str(out),
        jit=False,
    )
    np.testing.assert_array_equal(np.load(out), jit)


def test_plasma_fractal_range():
    f = mc.plasma_fractal(np.arange(3, dtype=np.uint64), mapsize=64)
    assert f.shape == (3, 28, 28) and f.min() >= 0 and f.max() <= 1
    assert f.std(axis=(1, 2)).min() > 0.01
    with pytest.raises(ValueError):
        mc.plasma_fractal(np.arange(1, dtype=np.uint64), mapsize=48)


# --- official data ------------------------------------------------------------------------


def write_tree(
    root: Path,
    corruption: str = "fog",
    n: int = 5,
    *,
    prefix: str = "mnist_c",
    images: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    skip: str | None = None,
) -> Path:
    folder = root / prefix / corruption if prefix else root / corruption
    folder.mkdir(parents=True, exist_ok=True)
    imgs = synthetic_digits(n)[..., None] if images is None else images
    labs = (np.arange(n) % 10).astype(np.int64) if labels is None else labels
    for split in ("train", "test"):
        for kind, arr in (("images", imgs), ("labels", labs)):
            if f"{split}_{kind}" != skip:
                np.save(folder / f"{split}_{kind}.npy", arr)
    return folder


def zip_tree(src: Path, dest: Path) -> Path:
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(src.rglob("*.npy")):
            zf.write(p, p.relative_to(src).as_posix())
    return dest


@pytest.mark.parametrize("layout", ["folder", "bare_folder", "zip"])
def test_load_official(tmp_path, layout):
    src = tmp_path / "src"
    write_tree(src, prefix="" if layout == "bare_folder" else "mnist_c")
    path = zip_tree(src, tmp_path / "mnist_c.zip") if layout == "zip" else src
    images, labels = mc.load_official(path, "fog", "test")
    assert images.dtype == np.uint8 and images.shape == (5, 28, 28)
    np.testing.assert_array_equal(images, synthetic_digits(5))
    assert labels.dtype == np.int64 and labels.tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("as_zip", [False, True])
@pytest.mark.parametrize(
    "fault,kwargs,message",
    [
        ("wrong shape", {"images": np.zeros((5, 28, 27, 1), np.uint8)}, r"test_images\.npy.*shape"),
        ("count", {"labels": np.arange(4)}, r"test_labels\.npy.*4 labels.*5 images"),
        ("missing", {"skip": "test_labels"}, r"test_labels\.npy.*not found"),
        ("label range", {"labels": np.array([0, 1, 2, 3, 10])}, r"test_labels\.npy.*0\.\.9"),
        ("dtype", {"images": np.zeros((5, 28, 28, 1), np.float32)}, r"test_images\.npy.*uint8"),
        ("pickle", {"labels": np.array([0, 1, 2, 3, "x"], dtype=object)}, r"test_labels\.npy"),
    ],
)
def test_load_official_errors(tmp_path, as_zip, fault, kwargs, message):
    src = tmp_path / "src"
    write_tree(src, **kwargs)
    path = zip_tree(src, tmp_path / "mnist_c.zip") if as_zip else src
    with pytest.raises(DataError, match=message):
        mc.load_official(path, "fog", "test")


def test_load_official_missing_things(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        mc.load_official(tmp_path / "nope", "fog")
    write_tree(tmp_path / "src")
    with pytest.raises(DataError, match="zigzag"):
        mc.load_official(tmp_path / "src", "zigzag")
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="bad.zip"):
        mc.load_official(bad, "fog")
    with pytest.raises(ValueError):
        mc.load_official(tmp_path / "src", "fog", "val")


# --- preview --------------------------------------------------------------------------------


def test_preview_png(tmp_path):
    out = mc.preview_png(synthetic_digits(4), tmp_path / "p.png", seed=0, n_cols=3)
    assert out == tmp_path / "p.png" and out.stat().st_size > 1000
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(out) as im:
        assert im.size[0] > 100 and im.size[1] > 300
    assert [p.name for p in tmp_path.iterdir()] == ["p.png"]
