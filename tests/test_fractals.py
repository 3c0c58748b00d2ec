"""Tests for fastmix.converters.fractals: IFS fractal generator, image-folder import, preview
grid."""

from __future__ import annotations

import os
from pathlib import Path

import numba
import numpy as np
import pytest
from fastmix.converters import fractals
from fastmix.converters.fractals import (
    COVERAGE_LEVEL,
    GENERATOR_VERSION,
    fractal_preview,
    generate_fractals,
    load_image_folder,
)
from PIL import Image

from fastmix.errors import ConfigError, DataError
from tests.conftest import run_python


@pytest.fixture(scope="module")
def bank() -> np.ndarray:
    return generate_fractals(64, size=32, seed=1)


# --- generator ----------------------------------------------------------------------------------


def test_shape_dtype_version(bank):
    assert bank.shape == (64, 32, 32) and bank.dtype == np.uint8
    assert isinstance(GENERATOR_VERSION, str) and GENERATOR_VERSION
    assert generate_fractals(0).shape == (0, 32, 32)
    assert generate_fractals(3, size=20, points=2000).shape == (3, 20, 20)


def test_deterministic_and_seed_dependent(bank):
    again = generate_fractals(64, size=32, seed=1)
    np.testing.assert_array_equal(bank, again)
    other = generate_fractals(64, size=32, seed=2)
    # every picture differs from the same-index picture of another seed
    assert (bank != other).any(axis=(1, 2)).all()


def test_split_calls_and_chunking_match_one_call(bank, monkeypatch):
    first = generate_fractals(25, seed=1)
    rest = generate_fractals(39, seed=1, start=25)
    np.testing.assert_array_equal(np.concatenate([first, rest]), bank)
    monkeypatch.setattr(fractals, "_CHUNK", 7)  # many kernel calls, uneven last chunk
    np.testing.assert_array_equal(generate_fractals(64, seed=1), bank)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 Numba threads")
def test_thread_count_independent():
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = generate_fractals(24, seed=9)
        numba.set_num_threads(2)
        two = generate_fractals(24, seed=9)
    finally:
        numba.set_num_threads(old)
    np.testing.assert_array_equal(one, two)


def test_not_blank(bank):
    coverage = (bank > COVERAGE_LEVEL).mean(axis=(1, 2))
    assert coverage.min() >= 0.15, coverage.min()
    assert coverage.max() <= 0.85, coverage.max()
    assert bank.max(axis=(1, 2)).min() >= 128
    # not binary: intermediate grey levels are common
    mid = ((bank > 32) & (bank < 224)).mean(axis=(1, 2))
    assert mid.mean() > 0.05


def test_not_all_alike(bank):
    x = bank.reshape(len(bank), -1).astype(np.float64) / 255.0
    iu = np.triu_indices(len(x), 1)
    l2 = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))[iu]
    corr_dist = 1.0 - np.corrcoef(x)[iu]
    assert l2.min() > 1.0  # no two pictures identical or near-identical
    assert l2.mean() > 4.0
    assert corr_dist.mean() > 0.5
    assert len(np.unique(bank.reshape(len(bank), -1), axis=0)) == len(bank)


def test_jit_off_parity(tmp_path):
    """Pure-Python run (NUMBA_DISABLE_JIT=1, subprocess) equals the JIT result exactly: the
    kernel is sequential per image, uses no fastmath, and math.log1p / pow come from the same
    libm, so bit-equal output is expected."""
    args = dict(n=3, size=16, seed=7, points=1024, start=5)
    jit = generate_fractals(**args)
    out = tmp_path / "nojit.npy"
    run_python(
        "import sys\n"
        "import numpy as np\n"
        "from fastmix.converters.fractals import generate_fractals\n"
        f"np.save(sys.argv[1], generate_fractals(**{args!r}))\n",
        str(out),
        jit=False,
    )
    np.testing.assert_array_equal(np.load(out), jit)


def test_bad_arguments():
    with pytest.raises(ConfigError):
        generate_fractals(-1)
    with pytest.raises(ConfigError):
        generate_fractals(2, size=4)
    with pytest.raises(ConfigError):
        generate_fractals(2, points=10)
    with pytest.raises(ConfigError):
        generate_fractals(2.5)


# --- image folder -------------------------------------------------------------------------------


def _expected(path: Path, resized: tuple[int, int], size: int) -> np.ndarray:
    """Independent reference: PIL grayscale, BICUBIC resize to the hand-computed shape, crop."""
    with Image.open(path) as im:
        g = im.convert("L")
    w, h = resized
    if g.size != resized:
        g = g.resize(resized, Image.Resampling.BICUBIC)
    left, top = (w - size) // 2, (h - size) // 2
    return np.asarray(g)[top : top + size, left : left + size]


def test_load_image_folder(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "pics"
    (folder / "sub").mkdir(parents=True)
    rgb = rng.integers(0, 256, (50, 40, 3), dtype=np.uint8)  # h=50, w=40
    Image.fromarray(rgb).save(folder / "a_rgb.png")
    gray = rng.integers(0, 256, (28, 60), dtype=np.uint8)  # h=28, w=60
    Image.fromarray(gray).save(folder / "sub" / "b_gray.jpg", quality=95)
    Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(folder / "c_same.PNG")
    (folder / "notes.txt").write_text("not a picture, ignored")
    (folder / ".hidden.png").write_text("hidden, ignored")
    outside = tmp_path / "outside.png"
    Image.fromarray(gray).save(outside)
    os.symlink(outside, folder / "link_out.png")  # points outside: skipped

    x = load_image_folder(folder, size=32)
    assert x.shape == (3, 32, 32) and x.dtype == np.uint8
    # sorted relative paths: a_rgb.png, c_same.PNG, sub/b_gray.jpg
    np.testing.assert_array_equal(x[0], _expected(folder / "a_rgb.png", (32, 40), 32))
    np.testing.assert_array_equal(x[1], _expected(folder / "c_same.PNG", (32, 32), 32))
    np.testing.assert_array_equal(x[2], _expected(folder / "sub" / "b_gray.jpg", (69, 32), 32))

    y = load_image_folder(folder, size=20)
    assert y.shape == (3, 20, 20)
    np.testing.assert_array_equal(y[0], _expected(folder / "a_rgb.png", (20, 25), 20))


def test_load_image_folder_bad_file(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "ok.png")
    (folder / "x.png").write_text("this is text, not a PNG")
    with pytest.raises(DataError, match=r"x\.png"):
        load_image_folder(folder)


def test_load_image_folder_empty(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="empty"):
        load_image_folder(empty)
    (empty / "readme.txt").write_text("no pictures here")
    with pytest.raises(DataError, match="no pictures"):
        load_image_folder(empty)
    with pytest.raises(DataError, match="missing"):
        load_image_folder(tmp_path / "missing")


# --- preview ------------------------------------------------------------------------------------


def test_fractal_preview(bank, tmp_path):
    out = fractal_preview(bank, tmp_path / "prev" / "grid.png", n=10, scale=2)
    assert out.is_file() and out.stat().st_size > 0
    with Image.open(out) as im:
        assert im.format == "PNG"
        # 10 tiles -> 4 columns x 3 rows of 64 px tiles with 2 px gutters
        assert im.size == (4 * 66 + 2, 3 * 66 + 2)
    assert sorted(p.name for p in out.parent.iterdir()) == ["grid.png"]
