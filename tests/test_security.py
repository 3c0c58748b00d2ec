"""Security: nothing we load executes code, and nothing we write escapes the chosen folder.

* checkpoints are loaded with ``torch.load(weights_only=True)``: a checkpoint carrying a pickled
  object whose ``__reduce__`` runs code is refused (CheckpointError) and the code never runs;
* MNIST-C's official ``.npy`` files are read with ``allow_pickle=False``: an object array with
  the same kind of payload is refused (DataError), directly and through ``fastmix convert``;
* downloads are verified before use: see tests/test_sources.py
  (``test_checksum_mismatch_download_is_discarded``, ``test_interrupted_transfer_is_discarded``,
  ``test_bad_local_copy_falls_through_to_mirror``);
* beton paths stay inside ``--out``: ``mnist_c/fog`` lands in ``<out>/mnist_c/``, a crafted
  name with ``..`` (or absolute, or with empty parts) is refused before anything is written.

Each payload writes a marker file; a control load with pickles allowed shows the payload is
live, so "marker absent" really means "not executed".
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from fastmix.converters.build import convert, load_manifest
from fastmix.converters.catalog import Built, DatasetSpec
from fastmix.converters.mnist_c import load_official
from fastmix.converters.sources import SourceResolver

from fastmix.cli import main
from fastmix.config import dumps, load_config
from fastmix.errors import DataError
from fastmix.train.checkpoint import CheckpointError, load_checkpoint, load_run
from tests.conftest import convert_argv


class Payload:
    """Unpickling this runs ``exec``: it writes ``marker`` (a stand-in for any code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('code ran')",))


def _evil_checkpoint(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "format": 1,
            "config_hash": "x",
            "variant": "base",
            "epoch": 0,
            "step": 0,
            "model": {},
            "optimizer": {},
            "best_val_acc": 0.0,
            "x": Payload(marker),
        },
        path,
    )
    return path


def test_payload_is_live_when_pickles_are_allowed(tmp_path):
    """Control: the same file loaded the unsafe way runs the payload."""
    marker = tmp_path / "control-marker"
    path = _evil_checkpoint(tmp_path / "evil.pt", marker)
    torch.load(path, weights_only=False)
    assert marker.read_text() == "code ran"


def test_checkpoint_with_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "marker"
    path = _evil_checkpoint(tmp_path / "evil.pt", marker)
    with pytest.raises(CheckpointError, match=r"evil\.pt: unreadable"):
        load_checkpoint(path)
    assert not marker.exists()


def test_eval_and_resume_refuse_a_checkpoint_with_code(tmp_path, capsys):
    """Through the CLI: ``fastmix eval`` and ``fastmix train --resume`` on a run whose
    checkpoints carry the payload exit with status 2, name the file, and run nothing."""
    marker = tmp_path / "marker"
    run = tmp_path / "run"
    cfg = load_config("base", ["smoke"], [f"data.dir={str(tmp_path / 'no-data')!r}"])
    run.mkdir()
    (run / "config.toml").write_text(dumps(cfg))
    for which in ("best", "last"):
        _evil_checkpoint(run / "checkpoints" / f"{which}.pt", marker)
    assert main(["eval", str(run), "--which", "last"]) == 2
    assert "last.pt: unreadable" in capsys.readouterr().err
    with pytest.raises(CheckpointError):
        load_run(run)
    assert not marker.exists()


# ----------------------------------------------------------------------- MNIST-C .npy files ---


def _evil_npy(folder: Path, marker: Path) -> None:
    """An official-layout corruption folder whose labels file is an object array (a pickle)."""
    folder.mkdir(parents=True)
    np.save(folder / "test_images.npy", np.zeros((2, 28, 28, 1), np.uint8))
    evil = np.empty(2, dtype=object)
    evil[0], evil[1] = Payload(marker), 1
    np.save(folder / "test_labels.npy", evil, allow_pickle=True)


def test_npy_payload_is_live_when_pickles_are_allowed(tmp_path):
    marker = tmp_path / "control-marker"
    _evil_npy(tmp_path / "mnist_c" / "fog", marker)
    np.load(tmp_path / "mnist_c" / "fog" / "test_labels.npy", allow_pickle=True)
    assert marker.exists()


@pytest.mark.parametrize("as_zip", [False, True])
def test_official_mnist_c_object_arrays_are_refused(tmp_path, as_zip):
    marker = tmp_path / "marker"
    _evil_npy(tmp_path / "src" / "mnist_c" / "fog", marker)
    path = tmp_path / "src"
    if as_zip:
        path = tmp_path / "mnist_c.zip"
        with zipfile.ZipFile(path, "w") as zf:
            for p in sorted((tmp_path / "src").rglob("*.npy")):
                zf.write(p, p.relative_to(tmp_path / "src").as_posix())
    with pytest.raises(
        DataError,
        match=r"test_labels\.npy: not a readable \.npy array without "
        r"pickles",
    ):
        load_official(path, "fog", "test")
    assert not marker.exists()


def test_convert_refuses_pickled_mnist_c_and_writes_nothing(tmp_path, capsys):
    marker = tmp_path / "marker"
    _evil_npy(tmp_path / "src" / "mnist_c" / "fog", marker)
    out = tmp_path / "out"
    code = main(
        convert_argv(
            tmp_path, "--mnist-c", str(tmp_path / "src"), "--only", "mnist_c/fog", "--out", str(out)
        )
    )
    assert code == 1
    printed = capsys.readouterr().out
    assert "FAILED mnist_c/fog" in printed and "test_labels.npy" in printed
    assert "without pickles" in printed
    assert not marker.exists()
    assert not list(out.rglob("*.beton*")) and load_manifest(out)["betons"] == {}


# --------------------------------------------------------------------------- output paths ---


def _spec(name: str) -> DatasetSpec:
    def build(ctx):
        return Built(np.zeros((2, 28, 28), np.uint8), np.full(2, -1, np.int64))

    return DatasetSpec(name, "ood", "test", False, build)


def test_slash_names_land_inside_out(tmp_path):
    assert _spec("mnist_c/fog").path(tmp_path / "out") == tmp_path / "out" / "mnist_c" / "fog.beton"


@pytest.mark.parametrize(
    "name",
    [
        "../escape",
        "mnist_c/../../escape",
        "/tmp/escape",
        "a//b",
        "./x",
        "x/.",
        "..",
        "a\\..\\b",
        "",
    ],
)
def test_names_that_would_escape_are_refused(tmp_path, name):
    with pytest.raises(DataError, match="not a relative path inside the output folder"):
        _spec(name).path(tmp_path / "out")


def test_convert_with_an_escaping_name_writes_nothing_outside(tmp_path):
    out = tmp_path / "sandbox" / "out"
    spec = _spec("../../escape")
    resolver = SourceResolver(cache_dir=tmp_path / "c", allow_download=False, use_system=False)
    result = convert({spec.name: spec}, out, resolver, progress=False)
    assert "not a relative path inside the output folder" in result.failed[spec.name]
    assert result.exit_code({spec.name: spec}) == 1
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(["sandbox", "out", ".lock"])
    assert load_manifest(out)["betons"] == {}
