"""Raw-source resolution and downloading against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest
from fastmix.converters.idx import read_bytes, write_idx
from fastmix.converters.sources import RawFile, SourceResolver, download, verify

from fastmix.errors import DataError, SourceUnavailable


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, bytes, int | None]] = {}

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        status, body, claimed = self.routes.get(self.path, (404, b"not found", None))
        self.send_response(status)
        self.send_header("Content-Length", str(claimed if claimed is not None else len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    routes: dict[str, tuple[int, bytes, int | None]] = {}
    handler = type("H", (_Handler,), {"routes": routes})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", routes
    httpd.shutdown()
    httpd.server_close()


def _labels_gz(tmp_path: Path, values) -> tuple[bytes, str]:
    p = tmp_path / "src-labels.gz"
    write_idx(p, np.asarray(values, np.uint8))
    return p.read_bytes(), hashlib.md5(read_bytes(p)).hexdigest()


def test_download_success_verifies_and_renames(tmp_path, server):
    base, routes = server
    body, md5 = _labels_gz(tmp_path, [1, 2, 3])
    routes["/d/labels.gz"] = (200, body, None)
    rf = RawFile("toy", "labels.gz", md5_content=md5, urls=(f"{base}/d/labels.gz",))
    cache = tmp_path / "cache"
    got = SourceResolver(cache_dir=cache, use_system=False).resolve(rf)
    assert got == cache / "toy" / "labels.gz"
    assert got.read_bytes() == body
    assert not list(cache.rglob("*.tmp-*"))
    # a second resolve is served from the cache (the server no longer has it)
    routes.clear()
    assert SourceResolver(cache_dir=cache, use_system=False).resolve(rf) == got


def test_http_404_is_reported_and_nothing_written(tmp_path, server):
    base, _ = server
    rf = RawFile("toy", "missing.gz", md5_content="0" * 32, urls=(f"{base}/missing.gz",))
    with pytest.raises(SourceUnavailable) as err:
        SourceResolver(cache_dir=tmp_path / "c", use_system=False).resolve(rf)
    msg = str(err.value)
    assert "HTTP 404" in msg and "toy/missing.gz" in msg and "0" * 32 in msg
    assert "put a verified copy at" in msg
    assert not (tmp_path / "c" / "toy" / "missing.gz").exists()


def test_checksum_mismatch_download_is_discarded(tmp_path, server):
    base, routes = server
    body, md5 = _labels_gz(tmp_path, [1, 2, 3])
    routes["/x.gz"] = (200, body, None)
    rf = RawFile("toy", "x.gz", md5_content="f" * 32, urls=(f"{base}/x.gz",))
    with pytest.raises(DataError, match=f"checksum mismatch.*content md5 {md5}, expected f{{32}}"):
        download(f"{base}/x.gz", rf, tmp_path / "c")
    assert not any((tmp_path / "c").rglob("x.gz*"))


def test_interrupted_transfer_is_discarded(tmp_path, server):
    base, routes = server
    body, md5 = _labels_gz(tmp_path, list(range(10)) * 50)
    routes["/cut.gz"] = (200, body[:40], len(body))  # promises more than it sends
    rf = RawFile("toy", "cut.gz", md5_content=md5, urls=(f"{base}/cut.gz",))
    with pytest.raises(DataError, match="interrupted transfer"):
        download(f"{base}/cut.gz", rf, tmp_path / "c", timeout_s=5)
    assert not any((tmp_path / "c").rglob("cut.gz*"))


def test_resolution_order_raw_dir_before_mirror(tmp_path, server):
    base, routes = server
    body, md5 = _labels_gz(tmp_path, [4, 5])
    raw = tmp_path / "raw" / "toy"
    raw.mkdir(parents=True)
    (raw / "l.gz").write_bytes(body)
    rf = RawFile("toy", "l.gz", md5_content=md5)
    r = SourceResolver(
        raw_dirs=[tmp_path / "raw"], cache_dir=tmp_path / "c", mirror=base, use_system=False
    )
    assert r.resolve(rf) == raw / "l.gz"


def test_plain_copy_in_raw_dir_is_accepted(tmp_path):
    raw = tmp_path / "raw" / "toy"
    raw.mkdir(parents=True)
    write_idx(raw / "l", np.array([1, 2], np.uint8))
    md5 = hashlib.md5((raw / "l").read_bytes()).hexdigest()
    rf = RawFile("toy", "l.gz", md5_content=md5)
    assert (
        SourceResolver(
            raw_dirs=[tmp_path / "raw"],
            cache_dir=tmp_path / "c",
            allow_download=False,
            use_system=False,
        ).resolve(rf)
        == raw / "l"
    )


def test_bad_local_copy_falls_through_to_mirror(tmp_path, server):
    base, routes = server
    body, md5 = _labels_gz(tmp_path, [7, 7, 7])
    raw = tmp_path / "raw" / "toy"
    raw.mkdir(parents=True)
    (raw / "l.gz").write_bytes(b"garbage")
    routes["/toy/l.gz"] = (200, body, None)
    rf = RawFile("toy", "l.gz", md5_content=md5)
    r = SourceResolver(
        raw_dirs=[tmp_path / "raw"],
        cache_dir=tmp_path / "c",
        mirror=base,
        allow_download=False,
        use_system=False,
    )
    assert r.resolve(rf).read_bytes() == body


def test_file_mirror(tmp_path):
    mirror = tmp_path / "m" / "toy"
    mirror.mkdir(parents=True)
    write_idx(mirror / "l.gz", np.array([3], np.uint8))
    md5 = hashlib.md5(read_bytes(mirror / "l.gz")).hexdigest()
    rf = RawFile("toy", "l.gz", md5_content=md5)
    r = SourceResolver(
        cache_dir=tmp_path / "c",
        mirror=(tmp_path / "m").as_uri(),
        allow_download=False,
        use_system=False,
    )
    assert r.resolve(rf) == tmp_path / "c" / "toy" / "l.gz"


def test_offline_failure_is_fast_and_lists_every_file(tmp_path):
    files = [
        RawFile("kmnist", n, md5_file="a" * 32, urls=(f"http://127.0.0.1:9/{n}",))
        for n in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    ]
    with pytest.raises(SourceUnavailable) as err:
        SourceResolver(cache_dir=tmp_path / "c", use_system=False, timeout_s=2).resolve_all(files)
    msg = str(err.value)
    assert "t10k-images-idx3-ubyte.gz" in msg and "t10k-labels-idx1-ubyte.gz" in msg
    assert "file md5 " + "a" * 32 in msg


def test_verify_gz_file_md5(tmp_path):
    p = tmp_path / "k.gz"
    write_idx(p, np.array([1], np.uint8))
    good = hashlib.md5(p.read_bytes()).hexdigest()
    verify(p, RawFile("kmnist", "k.gz", md5_file=good))
    with pytest.raises(DataError, match="file md5"):
        verify(p, RawFile("kmnist", "k.gz", md5_file="b" * 32))
