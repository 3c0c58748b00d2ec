"""The genuine raw data beside the checkout: checksums, counts, histograms, the split."""

from __future__ import annotations

import numpy as np
import pytest
from fastmix.converters import sources as src
from fastmix.converters.catalog import VAL_SIZE, stratified_split
from fastmix.converters.idx import read_idx_images, read_idx_labels
from fastmix.converters.sources import SourceResolver, verify

# From ../shared/data/MANIFEST.md (counted there independently of this code).
HISTOGRAMS = {
    ("mnist", "train"): [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
    ("mnist", "t10k"): [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
    ("fashion-mnist", "train"): [6000] * 10,
    ("fashion-mnist", "t10k"): [1000] * 10,
    ("notmnist", "t10k"): [1000] * 10,
}
MEAN_PIXEL = {
    ("mnist", "train"): 33.3184,
    ("mnist", "t10k"): 33.7912,
    ("fashion-mnist", "train"): 72.9404,
    ("notmnist", "t10k"): 108.7891,
}


@pytest.mark.parametrize(
    "rf",
    src.MNIST + src.FASHION_MNIST + src.NOTMNIST + src.OMNIGLOT_SMALL,
    ids=lambda f: f"{f.dataset}/{f.name}",
)
def test_checksums(shared_data, rf):
    verify(shared_data / rf.dataset / rf.name, rf)


@pytest.mark.parametrize("key", list(HISTOGRAMS), ids=lambda k: f"{k[0]}-{k[1]}")
def test_counts_and_histograms(shared_data, key):
    dataset, split = key
    folder = shared_data / dataset
    images = read_idx_images(folder / f"{split}-images-idx3-ubyte.gz")
    labels = read_idx_labels(folder / f"{split}-labels-idx1-ubyte.gz")
    assert len(images) == len(labels) == sum(HISTOGRAMS[key])
    assert np.bincount(labels, minlength=10).tolist() == HISTOGRAMS[key]
    if key in MEAN_PIXEL:
        assert images.mean() == pytest.approx(MEAN_PIXEL[key], abs=1e-3)


def test_resolver_finds_shared_data_offline(shared_data, tmp_path):
    r = SourceResolver(
        raw_dirs=[shared_data], cache_dir=tmp_path, allow_download=False, use_system=False
    )
    paths = r.resolve_all(src.MNIST)
    assert all(p.parent == shared_data / "mnist" for p in paths.values())


def test_stratified_split_of_mnist(shared_data):
    labels = read_idx_labels(shared_data / "mnist" / "train-labels-idx1-ubyte.gz")
    tr, va = stratified_split(labels, VAL_SIZE, seed=0)
    assert len(tr) == 55_000 and len(va) == VAL_SIZE
    assert np.intersect1d(tr, va).size == 0
    assert np.union1d(tr, va).size == 60_000
    full = np.bincount(labels, minlength=10) / len(labels)
    val = np.bincount(labels[va], minlength=10) / VAL_SIZE
    # largest-remainder apportionment: each class within one sample of its exact share
    assert np.all(np.abs(val * VAL_SIZE - full * VAL_SIZE) < 1.0)
    tr2, va2 = stratified_split(labels, VAL_SIZE, seed=0)
    np.testing.assert_array_equal(va, va2)
    _, va3 = stratified_split(labels, VAL_SIZE, seed=1)
    assert not np.array_equal(va, va3)
