"""Shared fixtures and helpers: the real data beside the checkout (skip cleanly when absent),
converted betons, `fastmix convert` arguments and raw-file sets for tests, subprocesses.

Plain helpers are imported as ``from tests.conftest import ...``."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

if TYPE_CHECKING:
    from fastmix.converters.catalog import DatasetSpec
    from fastmix.converters.sources import SourceResolver

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Keep the JIT cache inside the repo's ignored folder so tests never write into site-packages.
os.environ.setdefault("NUMBA_CACHE_DIR", str(REPO / ".numba_cache"))


@pytest.fixture(autouse=True, scope="module")
def plugins_stay_in_their_test_module():
    """What a test module's plugins register (models, kinds, losses, detectors, variants) and
    the plugin list every later config records are undone when the module ends, as if each
    module ran in its own process: later modules see the built-ins only, and their worker
    processes are not asked to import a test's temporary plugin."""
    from fastmix import registry

    regs = [(r, dict(r._items), dict(r._origin)) for r in registry.Registry.instances]
    loaded, keys, modules = list(registry._LOADED), set(registry._KEYS), set(sys.modules)
    yield
    added = set(registry._LOADED) - set(loaded)
    for r, items, origin in regs:
        r._items.clear()
        r._items.update(items)
        r._origin.clear()
        r._origin.update(origin)
    registry._LOADED[:] = loaded
    registry._KEYS.clear()
    registry._KEYS.update(keys)
    for name in set(sys.modules) - modules:  # a plugin imported again re-registers
        if name.startswith("fastmix_plugin_") or any(
            name == p or name.startswith(p + ".") for p in added
        ):
            del sys.modules[name]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "mnist" / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("../shared/data is not beside the checkout")
    return SHARED_DATA


TRAIN_SETS = (
    "mnist_train,mnist_val,mnist_test,fmnist_train,fmnist_test,fractals,"
    "gaussian_noise,mnist_c/stripe,mnist_c/translate"
)


@pytest.fixture(scope="session")
def data_dir(shared_data, tmp_path_factory) -> Path:
    """Real betons converted from ../shared/data (a small fractal bank, two MNIST-C sets)."""
    from fastmix.cli import main

    out = tmp_path_factory.mktemp("betons")
    code = main(
        convert_argv(
            out.parent,
            "--raw",
            str(shared_data),
            "--out",
            str(out),
            "--only",
            TRAIN_SETS,
            "--fractals",
            "64",
        )
    )
    assert code == 0
    return out


# --------------------------------------------------------------------------- convert ---


def convert_argv(tmp: Path, *args: str) -> list[str]:
    """``fastmix convert`` arguments for a test: offline, no progress bars, and the raw-file
    cache in ``tmp/cache`` (never the user's); ``args`` add ``--out``, ``--raw``, ``--only``..."""
    return ["convert", "--offline", "--no-progress", "--cache", str(tmp / "cache"), *args]


def offline_resolver(tmp: Path) -> SourceResolver:
    """A resolver that finds raw files in ``tmp/raw`` only: no download, no system folders."""
    from fastmix.converters.sources import SourceResolver

    return SourceResolver(
        raw_dirs=[tmp / "raw"], cache_dir=tmp / "c", allow_download=False, use_system=False
    )


def idx_bytes(arr: np.ndarray | list[int]) -> bytes:
    """``arr`` as uncompressed IDX bytes (uint8 elements, big-endian sizes), written here rather
    than by ``fastmix.converters.idx`` so tests check the reader against an independent writer
    and can cut or edit the bytes into malformed files."""
    arr = np.asarray(arr, np.uint8)
    dims = b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return bytes([0, 0, 8, arr.ndim]) + dims + arr.tobytes()


def kmnist_like(tmp: Path, images: bytes, labels: bytes) -> tuple[DatasetSpec, Path]:
    """A KMNIST-like test set in ``tmp/raw/kmnist`` (the official files are not obtainable):
    ``images`` and ``labels`` are IDX contents, gzipped there, and the spec's checksums are
    those files' own, so the IDX checks themselves judge them. Returns (spec, folder)."""
    from fastmix.converters.catalog import DatasetSpec, idx_builder
    from fastmix.converters.sources import RawFile

    folder = tmp / "raw" / "kmnist"
    folder.mkdir(parents=True)
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(images, mtime=0))
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels, mtime=0))
    files = [
        RawFile("kmnist", p.name, md5_file=hashlib.md5(p.read_bytes()).hexdigest())
        for p in sorted(folder.iterdir())
    ]
    spec = DatasetSpec(
        "kmnist_test", "test", "kmnist", False, idx_builder(files, "t10k"), {}, tuple(files)
    )
    return spec, folder


# ----------------------------------------------------------------------- subprocesses ---


def popen_logged(cmd: list[str], log: Path) -> subprocess.Popen:
    """Start ``cmd`` in the repository root in its own process group (so a test can SIGKILL the
    whole group), appending the command line and its output to ``log``."""
    with open(log, "ab") as f:
        f.write(f"\n$ {' '.join(cmd)}\n".encode())
        return subprocess.Popen(
            cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, start_new_session=True
        )


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL whatever is left of the process group of a run started by ``popen_logged`` (an
    orphaned child after a parent-only kill, or the whole run); nothing there is no fault."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_python(code: str, *args: str, jit: bool = True, timeout: float = 300) -> None:
    """Run ``code`` (with ``args`` as ``sys.argv[1:]``) in a fresh interpreter in the repository
    root, so ``tests`` is importable, with ``NUMBA_DISABLE_JIT=1`` unless ``jit``.

    A RuntimeWarning is an error there: the kernels' pure-Python path works on Python ints, and a
    warning means NumPy integer overflow crept in, which the compiled path would not show.
    """
    env = dict(os.environ, NUMBA_DISABLE_JIT="0" if jit else "1")
    subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", code, *args], cwd=REPO,
                   env=env, check=True, timeout=timeout)  # fmt: skip


def link_betons(data_dir: Path, dst: Path, names: tuple[str, ...]) -> Path:
    """A data folder ``dst`` with the betons ``names`` of ``data_dir`` only (hard links, and
    their manifest entries), so an evaluation there reads only those sets."""
    dst.mkdir()
    from fastmix.converters.build import MANIFEST

    manifest = json.loads((data_dir / MANIFEST).read_text())
    manifest["betons"] = {n: e for n, e in manifest["betons"].items() if n in names}
    assert sorted(manifest["betons"]) == sorted(names)
    for entry in manifest["betons"].values():
        (dst / entry["file"]).parent.mkdir(parents=True, exist_ok=True)
        os.link(data_dir / entry["file"], dst / entry["file"])
    (dst / MANIFEST).write_text(json.dumps(manifest))
    return dst
