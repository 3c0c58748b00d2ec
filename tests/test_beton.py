"""Beton writing/reading through the real FFCV writer and Loader."""

from __future__ import annotations

import os

import numpy as np
import pytest
from fastmix.converters.beton import (
    clean_stale_temporaries,
    read_beton,
    read_beton_arrays,
    sha256_file,
    write_beton,
)

from fastmix.errors import DataError


def _arrays(n=300, shape=(28, 28), seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, *shape), dtype=np.uint8), rng.integers(-1, 10, n)


@pytest.mark.parametrize("shape", [(28, 28), (32, 32)])
def test_round_trip_sequential_loader(tmp_path, shape):
    images, labels = _arrays(shape=shape)
    digest = write_beton(tmp_path / "a.beton", images, labels)
    assert digest == sha256_file(tmp_path / "a.beton")
    got_x, got_y = read_beton(tmp_path / "a.beton", batch_size=64)
    np.testing.assert_array_equal(got_x, images)
    np.testing.assert_array_equal(got_y, labels)
    # the loader-free reader gives the same arrays as the FFCV Loader
    direct_x, direct_y = read_beton_arrays(tmp_path / "a.beton")
    assert direct_x.dtype == got_x.dtype and direct_y.dtype == got_y.dtype
    np.testing.assert_array_equal(direct_x, got_x)
    np.testing.assert_array_equal(direct_y, got_y)


def test_rewrite_is_byte_identical(tmp_path):
    images, labels = _arrays(n=2000)
    a = write_beton(tmp_path / "a.beton", images, labels)
    b = write_beton(tmp_path / "b.beton", images, labels)
    assert a == b


@pytest.mark.parametrize(
    "images, labels, match",
    [
        (np.zeros((3, 28, 28), np.float32), np.zeros(3, int), "uint8"),
        (np.zeros((3, 28), np.uint8), np.zeros(3, int), "uint8"),
        (np.zeros((3, 28, 28), np.uint8), np.zeros(4, int), "3 images but 4 labels"),
        (np.zeros((3, 28, 28), np.uint8), np.array([0, -2, 1]), r"labels must lie in \[-1"),
        (np.zeros((0, 28, 28), np.uint8), np.zeros(0, int), "no samples"),
        (np.zeros((3, 28, 28), np.uint8), np.zeros(3, float), "integer"),
    ],
)
def test_invalid_arrays_write_nothing(tmp_path, images, labels, match):
    with pytest.raises(DataError, match=match) as err:
        write_beton(tmp_path / "bad.beton", images, labels)
    assert "bad.beton" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_missing_output_folder(tmp_path):
    images, labels = _arrays(n=5)
    with pytest.raises(DataError, match="does not exist"):
        write_beton(tmp_path / "nope" / "a.beton", images, labels)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores write permissions")
def test_unwritable_output_folder(tmp_path):
    images, labels = _arrays(n=5)
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(DataError, match="not writable"):
            write_beton(tmp_path / "a.beton", images, labels)
    finally:
        tmp_path.chmod(0o700)


def test_writer_timeout_leaves_nothing(tmp_path):
    images, labels = _arrays(n=20000)
    with pytest.raises(DataError, match="did not finish"):
        write_beton(tmp_path / "slow.beton", images, labels, timeout_s=0.01)
    assert list(tmp_path.iterdir()) == []


def test_clean_stale_temporaries(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.beton.tmp-123").write_bytes(b"partial")
    (tmp_path / "keep.beton").write_bytes(b"ok")
    removed = clean_stale_temporaries(tmp_path)
    assert [p.name for p in removed] == ["x.beton.tmp-123"]
    assert (tmp_path / "keep.beton").exists()


def test_read_missing_beton(tmp_path):
    with pytest.raises(DataError, match="beton not found"):
        read_beton(tmp_path / "none.beton")


def test_read_arrays_refuses_missing_and_truncated_betons(tmp_path):
    with pytest.raises(DataError, match="beton not found"):
        read_beton_arrays(tmp_path / "none.beton")
    images, labels = _arrays(n=50)
    write_beton(tmp_path / "a.beton", images, labels)
    data = (tmp_path / "a.beton").read_bytes()
    (tmp_path / "cut.beton").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cut.beton"):
        read_beton_arrays(tmp_path / "cut.beton")
