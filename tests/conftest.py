"""Shared fixtures: the real data beside the checkout (skip cleanly when absent)."""

from __future__ import annotations

import os
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
