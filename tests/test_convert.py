"""`fastmix convert` end to end: real raw files -> real betons + manifest, skips, staleness."""

from __future__ import annotations

import gzip
import hashlib
import json

import numpy as np
import pytest
from fastmix.converters.beton import read_beton
from fastmix.converters.build import convert, load_manifest
from fastmix.converters.catalog import Built, DatasetSpec
from fastmix.converters.idx import read_idx_images, write_idx

from fastmix.cli import main
from tests.conftest import convert_argv, idx_bytes, kmnist_like, offline_resolver

ONLY = "mnist_val,mnist_test,omniglot,gaussian_noise,mnist_inverted,fractals,kmnist_test"


@pytest.fixture(scope="module")
def converted(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    code = main(
        convert_argv(
            out.parent,
            "--raw",
            str(shared_data),
            "--out",
            str(out),
            "--only",
            ONLY,
            "--fractals",
            "40",
        )
    )
    return out, code


def test_builds_what_has_sources_and_skips_kmnist(converted, shared_data):
    out, code = converted
    assert code == 0  # only an optional set (KMNIST, offline) was skipped
    betons = load_manifest(out)["betons"]
    assert set(betons) == set(ONLY.split(",")) - {"kmnist_test"}
    assert betons["mnist_val"]["count"] == 5000 and betons["mnist_test"]["count"] == 10_000
    assert betons["omniglot"]["count"] == 2720 + 3120
    assert betons["fractals"]["count"] == 40 and betons["fractals"]["shape"] == [32, 32]
    assert betons["mnist_test"]["sources"]["mnist/t10k-images-idx3-ubyte.gz"] == (
        "2646ac647ad5339dbf082846283269ea"
    )
    for name, entry in betons.items():
        path = out / entry["file"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"], name


def test_betons_hold_the_raw_data(converted, shared_data):
    out, _ = converted
    raw = read_idx_images(shared_data / "mnist" / "t10k-images-idx3-ubyte.gz")
    x, y = read_beton(out / "mnist_test.beton")
    np.testing.assert_array_equal(x, raw)
    assert np.bincount(y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    inv, inv_y = read_beton(out / "mnist_inverted.beton")
    np.testing.assert_array_equal(inv, 255 - raw)
    assert (inv_y == -1).all()
    om, _ = read_beton(out / "omniglot.beton")
    # white strokes on a black background, like MNIST
    assert np.median(om) == 0 and om.max() == 255


def test_second_run_is_a_no_op(converted, shared_data, capsys):
    out, _ = converted
    before = (out / "manifest.json").read_text()
    code = main(
        convert_argv(
            out.parent,
            "--raw",
            str(shared_data),
            "--out",
            str(out),
            "--only",
            ONLY,
            "--fractals",
            "40",
        )
    )
    assert code == 0
    assert "built 0, up to date 6, skipped 1" in capsys.readouterr().out
    assert (out / "manifest.json").read_text() == before


def test_strict_fails_on_skips(converted, shared_data):
    out, _ = converted
    code = main(
        convert_argv(
            out.parent,
            "--raw",
            str(shared_data),
            "--out",
            str(out),
            "--only",
            "kmnist_test",
            "--strict",
        )
    )
    assert code == 1


def test_stale_or_damaged_beton_is_rebuilt(shared_data, tmp_path):
    out = tmp_path / "out"
    args = convert_argv(
        tmp_path, "--raw", str(shared_data), "--out", str(out), "--only", "gaussian_noise,mnist_val"
    )
    assert main(args) == 0
    entry = load_manifest(out)["betons"]["gaussian_noise"]
    path = out / entry["file"]
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    (out / "mnist_val.beton.tmp-999").write_bytes(b"half-written")
    assert main(args) == 0
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
    assert not (out / "mnist_val.beton.tmp-999").exists()


def test_required_set_missing_fails(tmp_path):
    code = main(
        convert_argv(
            tmp_path,
            "--raw",
            str(tmp_path / "empty"),
            "--out",
            str(tmp_path / "o"),
            "--only",
            "mnist_test",
        )
    )
    assert code == 1


def test_unknown_only_name(tmp_path, capsys):
    code = main(["convert", "--out", str(tmp_path), "--only", "mnistt", "--offline"])
    assert code == 2
    assert "unknown dataset 'mnistt'" in capsys.readouterr().err


def test_list(tmp_path, capsys):
    assert main(["convert", "--out", str(tmp_path), "--list"]) == 0
    out = capsys.readouterr().out
    assert "mnist_c/fog" in out and "kmnist_test" in out and "missing" in out


def _kmnist_like(tmp_path, n=30, labels=None):
    """A small KMNIST in the real layout and format (the official files are not obtainable)."""
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, (n, 28, 28))
    labels = labels if labels is not None else rng.integers(0, 10, n)
    spec, folder = kmnist_like(tmp_path, idx_bytes(images), idx_bytes(labels))
    return folder, spec


def test_kmnist_code_path_on_small_real_format_files(tmp_path):
    folder, spec = _kmnist_like(tmp_path)
    resolver = offline_resolver(tmp_path)
    result = convert({spec.name: spec}, tmp_path / "out", resolver, progress=False)
    assert result.built == ["kmnist_test"]
    x, y = read_beton(tmp_path / "out" / "kmnist_test.beton")
    np.testing.assert_array_equal(x, read_idx_images(folder / "t10k-images-idx3-ubyte.gz"))
    raw_labels = gzip.decompress((folder / "t10k-labels-idx1-ubyte.gz").read_bytes())
    np.testing.assert_array_equal(y, np.frombuffer(raw_labels, np.uint8, offset=8))  # kept
    entry = json.loads((tmp_path / "out" / "manifest.json").read_text())["betons"]["kmnist_test"]
    assert entry["family"] == "kmnist" and entry["count"] == 30


def test_bad_labels_fail_and_write_no_beton(tmp_path):
    _, spec = _kmnist_like(tmp_path, n=5, labels=np.array([1, 2, 10, 3, 4]))
    resolver = offline_resolver(tmp_path)
    result = convert({spec.name: spec}, tmp_path / "out", resolver, progress=False)
    assert "label 10 at index 2 is out of range" in result.failed["kmnist_test"]
    assert "t10k-labels-idx1-ubyte.gz" in result.failed["kmnist_test"]
    assert not list((tmp_path / "out").glob("*.beton*"))
    assert load_manifest(tmp_path / "out")["betons"] == {}


def test_a_convert_that_builds_nothing_writes_no_manifest(tmp_path):
    """Every build failed in a new folder: no manifest.json appears (an empty one would read as
    a finished conversion). Where a manifest exists, a failed build leaves its entries as they
    were."""
    _, bad = _kmnist_like(tmp_path, n=5, labels=np.array([1, 2, 10, 3, 4]))
    resolver = offline_resolver(tmp_path)
    out = tmp_path / "out"
    result = convert({bad.name: bad}, out, resolver, progress=False)
    assert list(result.failed) == ["kmnist_test"] and not result.built
    assert sorted(p.name for p in out.iterdir()) == [".lock"]

    def zeros(ctx):
        return Built(np.zeros((2, 28, 28), np.uint8), np.full(2, -1, np.int64))

    good = DatasetSpec("zeros", "unlabelled", "test", False, zeros)
    assert convert({good.name: good}, out, resolver, progress=False).built == ["zeros"]
    before = (out / "manifest.json").read_text()
    result = convert({bad.name: bad}, out, resolver, progress=False)
    assert list(result.failed) == ["kmnist_test"]
    assert (out / "manifest.json").read_text() == before


def test_checksum_mismatch_writes_no_beton(tmp_path):
    folder, spec = _kmnist_like(tmp_path)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", np.zeros((30, 28, 28), np.uint8))
    resolver = offline_resolver(tmp_path)
    result = convert({spec.name: spec}, tmp_path / "out", resolver, progress=False)
    assert "checksum mismatch" in result.failed["kmnist_test"]
    assert "t10k-images-idx3-ubyte.gz" in result.failed["kmnist_test"]
    assert result.exit_code({spec.name: spec}) == 1
    assert not list((tmp_path / "out").glob("*.beton*"))


def test_readers_open_only_files_inside_the_data_folder_with_the_recorded_size(
    shared_data, tmp_path
):
    """Training, evaluation and previews take beton paths from the manifest through
    ``manifest_beton_path``: a path leaving the folder, or a beton whose size changed since
    convert wrote it, is a DataError naming the manifest entry, before anything is read."""
    from fastmix.converters.build import manifest_beton_path, save_manifest

    from fastmix.config import load_config
    from fastmix.errors import DataError
    from fastmix.evaluate.sets import load_eval_sets
    from fastmix.train.trainer import require_betons

    out = tmp_path / "data"
    assert (
        main(
            convert_argv(
                tmp_path,
                "--raw",
                str(shared_data),
                "--out",
                str(out),
                "--only",
                "mnist_val,gaussian_noise",
            )
        )
        == 0
    )
    manifest = load_manifest(out)
    for name, entry in manifest["betons"].items():
        assert manifest_beton_path(out, name, entry) == out / entry["file"]
    sets = load_eval_sets(out, ["gaussian_noise"], required=("mnist_val",))
    assert len(sets["mnist_val"][0]) == 5000 and len(sets["gaussian_noise"][0]) == 10_000
    cfg = load_config("base", ["smoke"], [f"data.dir='{out}'", "data.train='mnist_val'"])
    assert require_betons(cfg) == {"train": out / "mnist_val.beton", "val": out / "mnist_val.beton"}

    (tmp_path / "outside.beton").write_bytes((out / "mnist_val.beton").read_bytes())
    for bad in ("../outside.beton", str(tmp_path / "outside.beton"), 5, ""):
        entry = {**manifest["betons"]["mnist_val"], "file": bad}
        save_manifest(out, {**manifest, "betons": {**manifest["betons"], "mnist_val": entry}})
        with pytest.raises(DataError, match=r"manifest\.json: entry 'mnist_val' has file"):
            load_eval_sets(out, [], required=("mnist_val",))
        with pytest.raises(DataError, match=r"manifest\.json: entry 'mnist_val' has file"):
            require_betons(cfg)
    save_manifest(out, manifest)

    noise = out / manifest["betons"]["gaussian_noise"]["file"]
    with open(noise, "ab") as f:
        f.write(b"\0")
    with pytest.raises(
        DataError,
        match=rf"{noise.name}: {noise.stat().st_size} bytes, but "
        r".*manifest\.json records .* 'gaussian_noise'",
    ):
        load_eval_sets(out, ["gaussian_noise"], required=("mnist_val",))
    # a missing file stays the caller's case: an optional set is reported unavailable
    noise.unlink()
    sets = load_eval_sets(out, ["gaussian_noise"], required=("mnist_val",))
    assert "gaussian_noise" in sets.unavailable and "missing" in sets.unavailable["gaussian_noise"]
