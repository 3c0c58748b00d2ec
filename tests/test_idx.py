"""IDX reading: real gz and plain files written by the tests, and every malformed case."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from fastmix.converters.idx import content_md5, read_idx_images, read_idx_labels, write_idx

from fastmix.errors import DataError


@pytest.fixture
def digits() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (37, 28, 28), dtype=np.uint8), rng.integers(0, 10, 37).astype(
        np.uint8
    )


@pytest.mark.parametrize("suffix", [".gz", ""])
def test_round_trip_gz_and_plain(tmp_path, digits, suffix):
    images, labels = digits
    write_idx(tmp_path / f"img{suffix}", images)
    write_idx(tmp_path / f"lab{suffix}", labels)
    np.testing.assert_array_equal(read_idx_images(tmp_path / f"img{suffix}"), images)
    got = read_idx_labels(tmp_path / f"lab{suffix}")
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, labels)


def test_header_is_big_endian_mnist_layout(tmp_path, digits):
    images, _ = digits
    write_idx(tmp_path / "img", images)
    raw = (tmp_path / "img").read_bytes()
    assert raw[:4] == bytes.fromhex("00000803")
    assert int.from_bytes(raw[4:8], "big") == 37
    assert len(raw) == 16 + 37 * 784


def test_content_md5_ignores_compression(tmp_path, digits):
    images, _ = digits
    write_idx(tmp_path / "a.gz", images)
    write_idx(tmp_path / "a", images)
    assert content_md5(tmp_path / "a.gz") == content_md5(tmp_path / "a")


def test_truncated_gzip(tmp_path, digits):
    write_idx(tmp_path / "img.gz", digits[0])
    data = (tmp_path / "img.gz").read_bytes()
    (tmp_path / "img.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"img\.gz.*(corrupt|truncated)"):
        read_idx_images(tmp_path / "img.gz")


def test_corrupt_gzip_body(tmp_path, digits):
    write_idx(tmp_path / "img.gz", digits[0])
    data = bytearray((tmp_path / "img.gz").read_bytes())
    data[20:40] = b"\xff" * 20
    (tmp_path / "img.gz").write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"img\.gz"):
        read_idx_images(tmp_path / "img.gz")


def test_truncated_plain_file_names_lengths(tmp_path, digits):
    write_idx(tmp_path / "img", digits[0])
    data = (tmp_path / "img").read_bytes()
    (tmp_path / "img").write_bytes(data[:-5])
    with pytest.raises(DataError, match=r"img: length .* does not match dimensions \(37, 28, 28\)"):
        read_idx_images(tmp_path / "img")


def test_trailing_bytes_are_a_length_error(tmp_path, digits):
    write_idx(tmp_path / "lab", digits[1])
    (tmp_path / "lab").write_bytes((tmp_path / "lab").read_bytes() + b"\0")
    with pytest.raises(DataError, match="does not match dimensions"):
        read_idx_labels(tmp_path / "lab")


def test_wrong_magic(tmp_path, digits):
    write_idx(tmp_path / "img", digits[0])
    data = bytearray((tmp_path / "img").read_bytes())
    data[0] = 0x12
    (tmp_path / "img").write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"img: wrong IDX magic 0x12000803"):
        read_idx_images(tmp_path / "img")


def test_labels_file_given_as_images(tmp_path, digits):
    write_idx(tmp_path / "lab.gz", digits[1])
    with pytest.raises(DataError, match=r"lab\.gz: wrong IDX magic 0x00000801.*expected 3"):
        read_idx_images(tmp_path / "lab.gz")


def test_non_uint8_element_type(tmp_path):
    (tmp_path / "f").write_bytes(bytes([0, 0, 0x0D, 1]) + (2).to_bytes(4, "big") + b"\0" * 8)
    with pytest.raises(DataError, match="element type 0x0d"):
        read_idx_labels(tmp_path / "f")


def test_label_out_of_range(tmp_path, digits):
    labels = digits[1].copy()
    labels[7] = 11
    write_idx(tmp_path / "lab.gz", labels)
    with pytest.raises(DataError, match=r"lab\.gz: label 11 at index 7 is out of range \[0, 10\)"):
        read_idx_labels(tmp_path / "lab.gz")


def test_wrong_image_size(tmp_path):
    write_idx(tmp_path / "img", np.zeros((3, 32, 32), np.uint8))
    with pytest.raises(DataError, match=r"images are \(32, 32\), expected \(28, 28\)"):
        read_idx_images(tmp_path / "img")


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="nope.gz: file not found"):
        read_idx_images(tmp_path / "nope.gz")


def test_gzip_detected_by_content_not_name(tmp_path, digits):
    payload = gzip.compress(bytes([0, 0, 8, 1]) + (3).to_bytes(4, "big") + bytes([1, 2, 3]))
    (tmp_path / "labels.idx").write_bytes(payload)
    np.testing.assert_array_equal(read_idx_labels(tmp_path / "labels.idx"), [1, 2, 3])
