"""IDX (the MNIST file format) reading with full validation.

Format (LeCun et al., http://yann.lecun.com/exdb/mnist/): a big-endian magic number
``0x0000TTDD`` where TT is the element type (0x08 = uint8) and DD the number of dimensions,
then DD big-endian uint32 sizes, then ``prod(sizes)`` raw elements. Images are ``0x00000803``
(N, 28, 28), labels ``0x00000801`` (N,). Files may be gzip-compressed (detected by content,
not by name).
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import zlib
from pathlib import Path

import numpy as np

from fastmix.errors import DataError

_UINT8 = 0x08
_GZIP_MAGIC = b"\x1f\x8b"


def read_bytes(path: str | os.PathLike) -> bytes:
    """The decompressed content of a plain or gzip file; DataError on a corrupt/truncated gzip."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: corrupt or truncated gzip data ({e})") from None


def content_md5(path: str | os.PathLike) -> str:
    """md5 of the decompressed content (the value published checksums refer to)."""
    return hashlib.md5(read_bytes(path)).hexdigest()


def parse_idx(data: bytes, name: str = "<bytes>", expect_ndim: int | None = None) -> np.ndarray:
    """Parse IDX bytes into a uint8 array, validating magic, dimensions and length."""
    if len(data) < 4:
        raise DataError(f"{name}: too short for an IDX header ({len(data)} bytes)")
    zero, dtype_code, ndim = int.from_bytes(data[:2], "big"), data[2], data[3]
    if zero != 0 or ndim == 0:
        raise DataError(f"{name}: wrong IDX magic 0x{data[:4].hex()} (expected 0x000008NN)")
    if dtype_code != _UINT8:
        raise DataError(f"{name}: IDX element type 0x{dtype_code:02x} is not uint8 (0x08)")
    if expect_ndim is not None and ndim != expect_ndim:
        raise DataError(
            f"{name}: wrong IDX magic 0x{data[:4].hex()}: {ndim} dimensions, "
            f"expected {expect_ndim} (0x0000080{expect_ndim})"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{name}: truncated IDX header")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + math.prod(dims)  # Python ints: np.prod would wrap around at 2**63
    if len(data) != expected:
        raise DataError(
            f"{name}: length {len(data)} bytes does not match dimensions {dims} "
            f"(expected {expected} = {header} header + {expected - header} data)"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


def read_idx_images(path: str | os.PathLike, shape: tuple[int, int] = (28, 28)) -> np.ndarray:
    """Read an IDX image file (N, H, W) uint8, checking the image size is ``shape``."""
    arr = parse_idx(read_bytes(path), str(path), expect_ndim=3)
    if arr.shape[1:] != tuple(shape):
        raise DataError(f"{path}: images are {arr.shape[1:]}, expected {tuple(shape)}")
    if arr.shape[0] == 0:
        raise DataError(f"{path}: contains no images")
    return arr


def read_idx_labels(path: str | os.PathLike, num_classes: int = 10) -> np.ndarray:
    """Read an IDX label file (N,) as int64, checking every label lies in [0, num_classes)."""
    arr = parse_idx(read_bytes(path), str(path), expect_ndim=1)
    if arr.size and arr.max() >= num_classes:
        bad = int(np.argmax(arr >= num_classes))
        raise DataError(
            f"{path}: label {int(arr[bad])} at index {bad} is out of range [0, {num_classes})"
        )
    return arr.astype(np.int64)


def write_idx(path: str | os.PathLike, arr: np.ndarray, compress: bool | None = None) -> None:
    """Write a uint8 array as IDX (gzip when ``compress`` or when the name ends in .gz)."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    header = bytes([0, 0, _UINT8, arr.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in arr.shape
    )
    data = header + arr.tobytes()
    path = Path(path)
    if compress if compress is not None else path.suffix == ".gz":
        data = gzip.compress(data, compresslevel=6, mtime=0)
    path.write_bytes(data)
