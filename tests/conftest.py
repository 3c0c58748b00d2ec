"""Shared fixtures and helpers: the real data beside the checkout (skip cleanly when absent),
converted betons, and a fresh interpreter for the JIT-on vs JIT-off parity tests.

Plain helpers are imported as ``from tests.conftest import ...``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Keep the JIT cache inside the repo's ignored folder so tests never write into site-packages.
os.environ.setdefault("NUMBA_CACHE_DIR", str(REPO / ".numba_cache"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "mnist" / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("../shared/data is not beside the checkout")
    return SHARED_DATA


TRAIN_SETS = ("mnist_train,mnist_val,mnist_test,fmnist_train,fmnist_test,fractals,"
              "gaussian_noise,mnist_c/stripe,mnist_c/translate")


@pytest.fixture(scope="session")
def data_dir(shared_data, tmp_path_factory) -> Path:
    """Real betons converted from ../shared/data (a small fractal bank, two MNIST-C sets)."""
    from fastmix.cli import main

    out = tmp_path_factory.mktemp("betons")
    code = main(["convert", "--raw", str(shared_data), "--out", str(out), "--only", TRAIN_SETS,
                 "--fractals", "64", "--offline", "--no-progress",
                 "--cache", str(out.parent / "raw-cache")])
    assert code == 0
    return out


def run_python(code: str, *args: str, jit: bool = True, timeout: float = 300) -> None:
    """Run ``code`` (with ``args`` as ``sys.argv[1:]``) in a fresh interpreter in the repository
    root, so ``tests`` is importable, with ``NUMBA_DISABLE_JIT=1`` unless ``jit``.

    A RuntimeWarning is an error there: the kernels' pure-Python path works on Python ints, and a
    warning means NumPy integer overflow crept in, which the compiled path would not show.
    """
    env = dict(os.environ, NUMBA_DISABLE_JIT="0" if jit else "1")
    subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", code, *args], cwd=REPO,
                   env=env, check=True, timeout=timeout)  # fmt: skip
