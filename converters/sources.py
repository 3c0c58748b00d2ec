"""Raw data sources: official URLs, content checksums, and where to look for each file.

Resolution order for every raw file (first hit that verifies wins):
1. ``--raw DIR`` (or ``$FASTMIX_RAW``): ``DIR/<dataset>/<file>`` (the ``.gz`` or the plain name);
2. the local cache (``$FASTMIX_CACHE``, default ``~/.cache/fastmix/raw``), same layout;
3. known system locations (Debian's ``dataset-fashion-mnist`` under /usr/share/datasets);
4. ``--mirror URL`` (``file://`` or ``http(s)://``), ``URL/<dataset>/<file>``;
5. the official URLs.
Downloads go to a temporary file in the cache, are verified, then renamed. Checksums are md5 of
the *decompressed* content for IDX files (what the datasets publish) and of the file itself for
zips; for KMNIST only the md5s of the official ``.gz`` files are published, so those are checked.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from fastmix.converters.idx import read_bytes

from fastmix.errors import DataError, SourceUnavailable
from fastmix.files import atomic_write

NETWORK_TIMEOUT_S = 8.0


@dataclass(frozen=True)
class RawFile:
    """One raw file of a dataset with its checksums and official URLs."""

    dataset: str
    name: str
    md5_content: str | None = None  # md5 of the decompressed bytes (IDX) or of the file (zip)
    md5_file: str | None = None  # md5 of the compressed file as published (KMNIST)
    urls: tuple[str, ...] = field(default_factory=tuple)

    @property
    def plain_name(self) -> str:
        return self.name[:-3] if self.name.endswith(".gz") else self.name

    def describe(self) -> str:
        sums = []
        if self.md5_content:
            sums.append(f"content md5 {self.md5_content}")
        if self.md5_file:
            sums.append(f"file md5 {self.md5_file}")
        return f"{self.dataset}/{self.name} ({', '.join(sums) or 'no checksum'})"


def _idx(dataset: str, bases: Sequence[str], names_md5: dict[str, str], kind: str) -> list[RawFile]:
    out = []
    for name, md5 in names_md5.items():
        urls = tuple(b.rstrip("/") + "/" + name for b in bases)
        if kind == "content":
            out.append(RawFile(dataset, name, md5_content=md5, urls=urls))
        else:
            out.append(RawFile(dataset, name, md5_file=md5, urls=urls))
    return out


MNIST = _idx(
    "mnist",
    ["https://ossci-datasets.s3.amazonaws.com/mnist", "http://yann.lecun.com/exdb/mnist"],
    {
        "train-images-idx3-ubyte.gz": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte.gz": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte.gz": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte.gz": "27ae3e4e09519cfbb04c329615203637",
    },
    "content",
)
FASHION_MNIST = _idx(
    "fashion-mnist",
    ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com"],
    {
        "train-images-idx3-ubyte.gz": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte.gz": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte.gz": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte.gz": "15d484375f8d13e6eb1aabb0c3f46965",
    },
    "content",
)
KMNIST = _idx(
    "kmnist",
    ["http://codh.rois.ac.jp/kmnist/dataset/kmnist"],
    {
        "train-images-idx3-ubyte.gz": "bdb82020997e1d708af4cf47b453dcf7",
        "train-labels-idx1-ubyte.gz": "e144d726b3acfaa3e44228e80efcd344",
        "t10k-images-idx3-ubyte.gz": "5c965bf0a639b31b8f53240b1b52f4d7",
        "t10k-labels-idx1-ubyte.gz": "7320c461ea6c1c855c0b718fb2a4b134",
    },
    "file",
)
NOTMNIST = _idx(
    "notmnist",
    ["https://raw.githubusercontent.com/davidflanagan/notMNIST-to-MNIST/master"],
    {
        "t10k-images-idx3-ubyte.gz": "1e78b07d677d6e4de2c8857bafff012e",
        "t10k-labels-idx1-ubyte.gz": "b10b3ef34b4e468313a7b24c216c6a53",
    },
    "content",
)
_OMNI_SMALL = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python"
OMNIGLOT_SMALL = [
    RawFile(
        "omniglot",
        "images_background_small1.zip",
        "e704a628b5459e08445c13499850abc4",
        urls=(f"{_OMNI_SMALL}/images_background_small1.zip",),
    ),
    RawFile(
        "omniglot",
        "images_background_small2.zip",
        "b75a71a51d3b13f821f212756fe481fd",
        urls=(f"{_OMNI_SMALL}/images_background_small2.zip",),
    ),
]
OMNIGLOT_FULL = [
    RawFile(
        "omniglot",
        "images_background.zip",
        "68d2efa1b9178cc56df9314c21c6e718",
        urls=(f"{_OMNI_SMALL}/images_background.zip",),
    ),
    RawFile(
        "omniglot",
        "images_evaluation.zip",
        "6b91aef0f799c5bb55b94e3f2daec811",
        urls=(f"{_OMNI_SMALL}/images_evaluation.zip",),
    ),
]

SYSTEM_DIRS: dict[str, tuple[str, ...]] = {
    "fashion-mnist": ("/usr/share/datasets/fashion-mnist",),
}


def default_cache_dir() -> Path:
    env = os.environ.get("FASTMIX_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "fastmix" / "raw"


def verify(path: Path, rf: RawFile) -> None:
    """Raise DataError unless ``path`` matches one of ``rf``'s checksums."""
    if rf.md5_file is not None:
        got = hashlib.md5(path.read_bytes()).hexdigest()
        if got == rf.md5_file:
            return
        if rf.md5_content is None:
            raise DataError(
                f"{path}: checksum mismatch for {rf.dataset}/{rf.name}: file md5 {got}, "
                f"expected {rf.md5_file}"
            )
    if rf.md5_content is not None:
        data = read_bytes(path) if rf.name.endswith(".gz") else path.read_bytes()
        got = hashlib.md5(data).hexdigest()
        if got != rf.md5_content:
            raise DataError(
                f"{path}: checksum mismatch for {rf.dataset}/{rf.name}: content md5 {got}, "
                f"expected {rf.md5_content}"
            )


class SourceResolver:
    """Finds (or downloads) verified raw files, following the documented resolution order."""

    def __init__(
        self,
        raw_dirs: Sequence[str | os.PathLike] = (),
        cache_dir: str | os.PathLike | None = None,
        mirror: str | None = None,
        allow_download: bool = True,
        use_system: bool = True,
        timeout_s: float = NETWORK_TIMEOUT_S,
    ) -> None:
        env_raw = os.environ.get("FASTMIX_RAW")
        dirs = [Path(d) for d in raw_dirs] or ([Path(env_raw)] if env_raw else [])
        self.raw_dirs = dirs
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.mirror = mirror
        self.allow_download = allow_download
        self.use_system = use_system
        self.timeout_s = timeout_s

    def _local_candidates(self, rf: RawFile) -> list[Path]:
        folders = [d / rf.dataset for d in self.raw_dirs] + [self.cache_dir / rf.dataset]
        if self.use_system:
            folders += [Path(p) for p in SYSTEM_DIRS.get(rf.dataset, ())]
        out = []
        for folder in folders:
            for name in dict.fromkeys((rf.name, rf.plain_name)):
                out.append(folder / name)
        return out

    def _urls(self, rf: RawFile) -> list[str]:
        urls = []
        if self.mirror:
            urls.append(f"{self.mirror.rstrip('/')}/{rf.dataset}/{rf.name}")
        if self.allow_download:
            urls.extend(rf.urls)
        return urls

    def resolve(self, rf: RawFile) -> Path:
        """Path of a verified copy of ``rf``.

        Raises SourceUnavailable saying what was tried and where to put the file.
        """
        tried: list[str] = []
        mismatches: list[str] = []
        for cand in self._local_candidates(rf):
            if cand.is_file():
                try:
                    verify(cand, rf)
                    return cand
                except DataError as e:
                    mismatches.append(str(e))
            else:
                tried.append(str(cand))
        for url in self._urls(rf):
            try:
                return download(url, rf, self.cache_dir, self.timeout_s)
            except DataError as e:
                tried.append(f"{url} ({e})")
        writable = [d for d in self.raw_dirs if d.is_dir() and os.access(d, os.W_OK)]
        where = writable[0] if writable else self.cache_dir
        lines = [f"cannot obtain {rf.describe()}."]
        lines += [f"  bad copy: {m}" for m in mismatches]
        lines += [f"  tried: {t}" for t in tried]
        dest = where / rf.dataset / rf.name
        lines.append(f"  put a verified copy at {dest}, or pass --mirror URL")
        # A copy that exists but is bad is the user's problem to fix, not a source to skip.
        raise (DataError if mismatches else SourceUnavailable)("\n".join(lines))

    def resolve_all(self, files: Sequence[RawFile]) -> dict[str, Path]:
        """Resolve several files; SourceUnavailable lists every missing one, not just the first."""
        out, errors, bad = {}, [], False
        for rf in files:
            try:
                out[rf.name] = self.resolve(rf)
            except DataError as e:
                errors.append(str(e))
                bad = bad or not isinstance(e, SourceUnavailable)
        if errors:
            raise (DataError if bad else SourceUnavailable)("\n".join(errors))
        return out


def download(url: str, rf: RawFile, cache_dir: Path, timeout_s: float = NETWORK_TIMEOUT_S) -> Path:
    """Fetch ``url`` into the cache through ``fastmix.files.atomic_write``: the transfer goes to
    a temporary file that is verified before it is renamed into place, so the cache never holds
    a partial or unverified copy under the real name."""
    dest = cache_dir / rf.dataset / rf.name

    def fetch(f: BinaryIO) -> None:
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as resp:
                expected = resp.headers.get("Content-Length")
                size = 0
                while block := resp.read(1 << 20):
                    f.write(block)
                    size += len(block)
            if expected is not None and size != int(expected):
                raise DataError(f"interrupted transfer: {size} of {expected} bytes")
        except urllib.error.HTTPError as e:
            raise DataError(f"HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
            reason = getattr(e, "reason", e)
            raise DataError(f"network error: {reason}") from None
        except OSError as e:  # http.client.IncompleteRead and friends
            raise DataError(f"interrupted transfer: {e}") from None
        f.flush()
        verify(Path(f.name), rf)

    try:
        return atomic_write(dest, fetch)
    except OSError as e:  # the cache folder or its temporary file cannot be created
        raise DataError(f"{dest}: cannot write to the cache ({e.strerror or e})") from None
