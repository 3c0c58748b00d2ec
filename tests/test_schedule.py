"""Concurrent training (``--jobs``): job counts, core groups, real pinned processes, failures."""

from __future__ import annotations

import os

import pytest

from fastmix.cli import main
from fastmix.config import VARIANTS
from fastmix.errors import TrainingError
from fastmix.train.checkpoint import load_checkpoint
from fastmix.train.jobs import core_groups, resolve_jobs, usable_cores


def test_auto_jobs_is_one_per_core_on_cpu_and_one_on_cuda():
    cores = len(usable_cores())
    assert resolve_jobs("auto", 6, "cpu") == min(6, cores)
    assert resolve_jobs("auto", 1, "cpu") == 1
    assert resolve_jobs("auto", 6, "cuda") == 1
    assert resolve_jobs("3", 2, "cpu") == 2  # never more jobs than runs
    assert resolve_jobs(1, 6, "cpu") == 1
    for bad in ("0", "-1", "two"):
        with pytest.raises(TrainingError, match="--jobs"):
            resolve_jobs(bad, 6, "cpu")


def test_core_groups_are_disjoint_and_even():
    assert core_groups(2, [0, 1]) == [{0}, {1}]
    groups = core_groups(3, list(range(8)))
    assert [len(g) for g in groups] == [2, 2, 2]
    assert len(set().union(*groups)) == 6  # disjoint: 6 distinct cores, 2 left over
    assert core_groups(4, [5, 7]) == [{5}, {7}, {5}, {7}]  # more jobs than cores: round robin


def test_all_six_train_concurrently_in_pinned_processes(data_dir, tmp_path, capsys):
    # One job per core (up to 6), so each child is pinned to a single core: Numba sizes its pool
    # by that mask, and a loader or read_beton asking for more threads used to crash the child.
    jobs = min(6, len(usable_cores()))
    out = tmp_path / "runs"
    code = main(["train", "--variant", "all", "--config", "smoke", "--data", str(data_dir),
                 "--out", str(out), "--device", "cpu", "--jobs", str(jobs),
                 "--no-progress"])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    cores = {str(sorted({c})) for c in usable_cores()[:jobs]}
    for v in VARIANTS:
        run = out / f"{v}-s0"
        assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 12
        assert str(run) in (run / "train.log").read_text()  # the child's own output, kept
        assert any(f"{v}: best val acc" in line and f"(cores {c})" in line
                   for line in printed.splitlines() for c in cores)  # fmt: skip
    assert printed.count("-s0\n") == 6  # the summary table lists every run


def test_a_failing_run_is_named_and_nothing_new_starts(data_dir, tmp_path, capsys):
    partial = tmp_path / "data"
    partial.mkdir()
    for p in data_dir.iterdir():  # every beton except the outlier set
        if p.name != "fmnist_train.beton":
            os.symlink(p, partial / p.name)
    code = main(["train", "--variant", "all", "--config", "smoke", "--data", str(partial),
                 "--out", str(tmp_path / "runs"), "--device", "cpu", "--jobs", "2",
                 "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "training failed" in err and "_oe" in err and "fmnist_train" in err
