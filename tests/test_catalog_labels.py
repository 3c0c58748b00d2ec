"""Labelled sets in the catalog: class labels kept, the Fashion-MNIST split, version rebuilds.

The references are read here straight from the raw IDX files with gzip + numpy (not through
fastmix's IDX reader), and the betons are read back with ``read_beton``.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest
from fastmix.converters import sources as src
from fastmix.converters.beton import read_beton
from fastmix.converters.build import convert, load_manifest
from fastmix.converters.catalog import (
    CLEAN_BASES,
    SPLIT_SEED,
    VAL_SIZE,
    CatalogOptions,
    DatasetSpec,
    build_catalog,
    idx_ood_builder,
    split_builder,
    stratified_split,
)
from fastmix.converters.idx import write_idx
from fastmix.converters.sources import RawFile, SourceResolver

from fastmix.cli import main

LABELLED = "fmnist_train,fmnist_val,fmnist_test,notmnist_test,fmnist_c/fog,fmnist_c/rotate"
# What convert recorded for the MNIST specs before labels were kept elsewhere: equal
# fingerprints mean existing MNIST betons stay up to date (not rebuilt), and their bytes below.
MNIST_FINGERPRINTS = {
    "mnist_train": "d6ce21316e43134e",
    "mnist_val": "3647af53fa35ab53",
    "mnist_test": "63b2b42935fc593a",
    "mnist_inverted": "d32fe8a78b9bacf8",
}
MNIST_SHA256 = {
    "mnist_val": "495e20604f233cd2220c09df01de633c9d8c990b0391169598a5c94cfb20d26d",
    "mnist_test": "635994286aee38756c75a91cbd7893e534b4d2ce79e4f6d77e608497de7d30b8",
    "mnist_inverted": "072161e87146bc3e860417df20a3e16b95b484919313dd224d51b0e68927c2d5",
}


def _raw(path: Path) -> np.ndarray:
    """An IDX file as a uint8 array, decoded here independently of fastmix.converters.idx."""
    data = gzip.decompress(path.read_bytes())
    assert data[:3] == b"\0\0\x08", path
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _cli_convert(shared_data: Path, out: Path, only: str, *extra: str) -> int:
    return main(
        [
            "convert",
            "--raw",
            str(shared_data),
            "--out",
            str(out),
            "--only",
            only,
            "--offline",
            "--no-progress",
            "--cache",
            str(out.parent / "raw-cache"),
            *extra,
        ]
    )


@pytest.fixture(scope="module")
def labelled(shared_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("labelled")
    assert _cli_convert(shared_data, out, LABELLED, "--corrupt", "fmnist_test") == 0
    return out


def test_test_sets_keep_the_raw_labels(labelled, shared_data):
    for name, folder in (("fmnist_test", "fashion-mnist"), ("notmnist_test", "notmnist")):
        x, y = read_beton(labelled / f"{name}.beton")
        np.testing.assert_array_equal(x, _raw(shared_data / folder / "t10k-images-idx3-ubyte.gz"))
        np.testing.assert_array_equal(y, _raw(shared_data / folder / "t10k-labels-idx1-ubyte.gz"))
        assert np.bincount(y).tolist() == [1000] * 10  # notMNIST: letters A-J as 0-9
    entries = load_manifest(labelled)["betons"]
    assert entries["fmnist_test"]["role"] == "test"
    assert entries["fmnist_test"]["family"] == "fashion-mnist"


def test_fmnist_split_is_stratified_disjoint_and_the_official_training_set(labelled, shared_data):
    raw_x = _raw(shared_data / "fashion-mnist" / "train-images-idx3-ubyte.gz")
    raw_y = _raw(shared_data / "fashion-mnist" / "train-labels-idx1-ubyte.gz")
    tx, ty = read_beton(labelled / "fmnist_train.beton")
    vx, vy = read_beton(labelled / "fmnist_val.beton")
    assert len(tx) == 55_000 and len(vx) == VAL_SIZE
    share = np.bincount(raw_y, minlength=10) / len(raw_y)
    assert np.all(np.abs(np.bincount(vy, minlength=10) - VAL_SIZE * share) <= 1)

    def rows(x: np.ndarray, y: np.ndarray) -> list[bytes]:
        return [img.tobytes() + bytes([lab]) for img, lab in zip(x, y, strict=True)]

    # train + val as a multiset of (image, label) rows is exactly the official 60,000, so the
    # two are disjoint (a sample in both would leave another sample out) and labels are kept
    assert sorted(rows(tx, ty) + rows(vx, vy)) == sorted(rows(raw_x, raw_y))
    # the split MNIST uses (same function, size and seed), applied to Fashion-MNIST's labels
    tr, va = stratified_split(raw_y, VAL_SIZE, SPLIT_SEED)
    np.testing.assert_array_equal(tx, raw_x[tr])
    np.testing.assert_array_equal(vx, raw_x[va])
    # both keep the official order: the split takes sorted index sets
    where = {r: i for i, r in enumerate(rows(raw_x, raw_y))}
    for x, y in ((tx, ty), (vx, vy)):
        idx = [where[r] for r in rows(x, y)]
        assert idx == sorted(idx)
    entries = load_manifest(labelled)["betons"]
    assert entries["fmnist_train"]["role"] == "train" and entries["fmnist_val"]["role"] == "val"
    mnist = build_catalog()["mnist_train"].params  # the same split function, size and seed
    assert entries["fmnist_train"]["params"] == entries["fmnist_val"]["params"] == mnist


def test_corrupted_fmnist_keeps_the_labels(labelled, shared_data):
    clean = _raw(shared_data / "fashion-mnist" / "t10k-images-idx3-ubyte.gz")
    labels = _raw(shared_data / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz")
    entries = load_manifest(labelled)["betons"]
    for c in ("fog", "rotate"):
        x, y = read_beton(labelled / "fmnist_c" / f"{c}.beton")
        np.testing.assert_array_equal(y, labels)
        assert x.shape == clean.shape and np.mean(x != clean) > 0.1  # really corrupted
        e = entries[f"fmnist_c/{c}"]
        assert e["family"] == "fashion-mnist" and e["role"] == "corrupted"
        assert e["version"].endswith("+base-2")


def test_sets_without_classes_keep_minus_one():
    catalog = build_catalog()
    for name in (
        "omniglot",
        "gaussian_noise",
        "bernoulli_noise",
        "uniform_noise",
        "mnist_inverted",
    ):
        assert catalog[name].role == "unlabelled", name
        assert "label -1" in catalog[name].description, name
    assert catalog["fractals"].role == "mixing"


def test_kmnist_has_the_same_splits_and_is_skipped_without_a_copy(shared_data, tmp_path, capsys):
    catalog = build_catalog()
    for name, role in (("kmnist_train", "train"), ("kmnist_val", "val"), ("kmnist_test", "test")):
        assert catalog[name].role == role and catalog[name].family == "kmnist"
    assert catalog["kmnist_train"].params == catalog["mnist_train"].params
    assert {f.name for f in catalog["kmnist_val"].sources} == {
        f.name for f in src.KMNIST if f.name.startswith("train")
    }
    assert _cli_convert(shared_data, tmp_path / "out", "kmnist_train,kmnist_val,kmnist_test") == 0
    out = capsys.readouterr().out
    for name in ("kmnist_train", "kmnist_val", "kmnist_test"):
        assert f"skipped (optional) {name}: cannot obtain kmnist/" in out
    assert "bdb82020997e1d708af4cf47b453dcf7" in out  # the declared train-images checksum


def test_kmnist_splits_build_from_a_copy_in_the_official_layout(tmp_path):
    """The kmnist_train / kmnist_val builders on a small KMNIST-format training set (the real
    files are not obtainable here; the specs get these files' checksums)."""
    folder = tmp_path / "raw" / "kmnist"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    n = 6000
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.choice(10, n, p=np.linspace(1, 3, 10) / np.linspace(1, 3, 10).sum())
    write_idx(folder / "train-images-idx3-ubyte.gz", images)
    write_idx(folder / "train-labels-idx1-ubyte.gz", labels)
    files = tuple(
        RawFile("kmnist", p.name, md5_file=hashlib.md5(p.read_bytes()).hexdigest())
        for p in sorted(folder.iterdir())
    )
    real = build_catalog()
    specs = {
        n: dataclasses.replace(
            real[n], sources=files, builder=split_builder(list(files), n.split("_")[1])
        )
        for n in ("kmnist_train", "kmnist_val")
    }
    resolver = SourceResolver(
        raw_dirs=[tmp_path / "raw"],
        cache_dir=tmp_path / "c",
        allow_download=False,
        use_system=False,
    )
    assert convert(specs, tmp_path / "out", resolver, progress=False).built == list(specs)
    tx, ty = read_beton(tmp_path / "out" / "kmnist_train.beton")
    vx, vy = read_beton(tmp_path / "out" / "kmnist_val.beton")
    assert len(tx) == n - VAL_SIZE and len(vx) == VAL_SIZE
    share = np.bincount(labels, minlength=10) / n
    assert np.all(np.abs(np.bincount(vy, minlength=10) - VAL_SIZE * share) <= 1)
    both = sorted([*map(bytes, tx), *map(bytes, vx)])
    assert both == sorted(map(bytes, images))  # disjoint, and together the whole set
    key = {bytes(img): lab for img, lab in zip(images, labels, strict=True)}
    assert [key[bytes(i)] for i in vx] == vy.tolist()  # each image keeps its label


def test_mnist_specs_and_bytes_are_unchanged(shared_data, tmp_path):
    catalog = build_catalog(CatalogOptions(mnist_c_train=True))
    for name, fp in MNIST_FINGERPRINTS.items():
        assert catalog[name].fingerprint() == fp, name
    from fastmix.converters.mnist_c import GENERATOR_VERSION

    for name, spec in catalog.items():
        if name.startswith(("mnist_c/", "mnist_c_train/")):
            assert spec.version == GENERATOR_VERSION and spec.family == "mnist", name
            assert spec.sources == tuple(src.MNIST), name
    assert _cli_convert(shared_data, tmp_path / "out", ",".join(MNIST_SHA256)) == 0
    for name, digest in MNIST_SHA256.items():
        data = (tmp_path / "out" / f"{name}.beton").read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest, name


def _old_fmnist_test() -> DatasetSpec:
    """The fmnist_test spec as convert recorded it while its labels were -1 (version 1)."""
    return DatasetSpec(
        "fmnist_test",
        "ood",
        "fashion-mnist",
        False,
        idx_ood_builder(src.FASHION_MNIST, "t10k"),
        {},
        tuple(src.FASHION_MNIST),
        "1",
        "Fashion-MNIST test (10,000)",
    )


def test_version_bump_rebuilds_exactly_the_changed_specs(shared_data, tmp_path, capsys):
    out = tmp_path / "data"
    names = ["fmnist_test", "mnist_val", "gaussian_noise"]
    old = {**{n: build_catalog()[n] for n in names}, "fmnist_test": _old_fmnist_test()}
    resolver = SourceResolver(
        raw_dirs=[shared_data], cache_dir=tmp_path / "c", allow_download=False, use_system=False
    )
    assert convert(old, out, resolver, progress=False).built == names
    assert (read_beton(out / "fmnist_test.beton")[1] == -1).all()
    before = load_manifest(out)["betons"]
    kept = {n: (out / f"{n}.beton").stat().st_mtime_ns for n in names[1:]}

    assert _cli_convert(shared_data, out, ",".join(names)) == 0
    printed = capsys.readouterr().out
    assert "built 1, up to date 2," in printed
    assert "fmnist_test: rebuilt (spec version 1 -> 2: class labels kept instead of -1)" in printed
    assert printed.count("rebuilt (") == 1
    after = load_manifest(out)["betons"]
    assert after["fmnist_test"]["version"] == "2" and after["fmnist_test"]["role"] == "test"
    assert after["fmnist_test"]["sha256"] != before["fmnist_test"]["sha256"]
    for n in names[1:]:
        assert after[n] == before[n] and (out / f"{n}.beton").stat().st_mtime_ns == kept[n]
    y = read_beton(out / "fmnist_test.beton")[1]
    np.testing.assert_array_equal(
        y, _raw(shared_data / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz")
    )

    # a third run has nothing to rebuild and says nothing about versions
    assert _cli_convert(shared_data, out, ",".join(names)) == 0
    printed = capsys.readouterr().out
    assert "built 0, up to date 3," in printed and "rebuilt" not in printed


def test_corrupted_sets_of_a_changed_base_are_versioned_with_it():
    catalog = build_catalog(CatalogOptions(corrupt=tuple(CLEAN_BASES)))
    from fastmix.converters.mnist_c import GENERATOR_VERSION

    for base in ("fmnist_test", "kmnist_test", "notmnist_test"):
        spec = catalog[base.replace("_test", "_c") + "/fog"]
        assert spec.version == f"{GENERATOR_VERSION}+base-{catalog[base].version}"
        assert spec.family == catalog[base].family and spec.sources == catalog[base].sources
        assert base in spec.changes and "labels" in spec.changes
    assert catalog["mnist_c/fog"].version == GENERATOR_VERSION


def test_rebuild_reason():
    spec = build_catalog()["gaussian_noise"]
    entry = {"fingerprint": spec.fingerprint(), "version": spec.version, "params": spec.params}
    assert spec.rebuild_reason(None) is None  # a new beton
    assert spec.rebuild_reason(entry) is None  # same spec: the file itself was the problem
    moved = dataclasses.replace(spec, params={**spec.params, "n": 40})
    assert moved.rebuild_reason(entry) == "parameters changed: n 10000 -> 40"
    bumped = dataclasses.replace(spec, version="9", changes="new noise")
    assert bumped.rebuild_reason(entry) == f"spec version {spec.version} -> 9: new noise"
    assert dataclasses.replace(spec, version="9").rebuild_reason(entry) == (
        f"spec version {spec.version} -> 9"
    )
