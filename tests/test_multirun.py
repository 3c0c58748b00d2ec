"""Several runs in one job (``fastmix.train.trainer.train_runs``), in one process or on worker
processes (``fastmix.train.procs``): each run's weights are what it gets trained alone, an
interrupted multi-run job resumes bit-identically, and a failing worker names its runs.

Bit for bit needs the same float rounding, hence the same number of torch threads per step:
the runs trained alone here are pinned to one core (one torch thread per step), as each run
is on a worker process (one torch thread each).
"""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import threading
import time

import pytest
import torch

from fastmix.config import load_config
from fastmix.errors import TrainingError
from fastmix.runtime import usable_cores
from fastmix.train.checkpoint import load_checkpoint
from fastmix.train.preemption import Preempted
from fastmix.train.procs import split_runs
from fastmix.train.run import Run
from fastmix.train.trainer import RunRequest, train, train_runs

VARIANTS = ("base", "sp_oe", "pixmix")
SETTINGS = [
    "train.max_steps=10",
    "train.log_every=1",
    "train.device='cpu'",
    "model.name='lenet'",
    "model.width=4",
    "train.ckpt_every=4",
]


def _cfg(variant, data_dir, *extra):
    return load_config(variant, ["smoke"], [f"data.dir='{data_dir}'", *SETTINGS, *extra])


@contextlib.contextmanager
def _one_core():
    cores = usable_cores()
    os.sched_setaffinity(0, {cores[0]})
    try:
        yield
    finally:
        os.sched_setaffinity(0, set(cores))


def _state(run_dir):
    ckpt = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    rows = list(csv.DictReader(open(run_dir / "steps.csv", newline="")))
    return ckpt, rows


def _assert_same(a_dir, b_dir):
    a, rows_a = _state(a_dir)
    b, rows_b = _state(b_dir)
    assert a["step"] == b["step"]
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), (a_dir.name, key)
    for i, s in a["optimizer"]["state"].items():
        assert torch.equal(s["momentum_buffer"], b["optimizer"]["state"][i]["momentum_buffer"])
    assert torch.equal(a["dropout_rng"], b["dropout_rng"])
    assert rows_a == rows_b


@pytest.fixture(scope="module")
def alone(data_dir, tmp_path_factory):
    """Each variant trained by itself, on one core."""
    root = tmp_path_factory.mktemp("alone")
    with _one_core():
        for v in VARIANTS:
            train(_cfg(v, data_dir), root / v, progress=False)
    return root


@pytest.mark.skipif(len(usable_cores()) < 2, reason="needs two cores for two workers")
def test_runs_trained_together_equal_runs_trained_alone(alone, data_dir, tmp_path):
    """Three variants from one stream on two worker processes (each with its own loader):
    every run's weights, momentum, dropout generator and step losses equal its solo run's,
    bit for bit."""
    cfgs = [_cfg(v, data_dir, "train.workers=2") for v in VARIANTS]
    results = train_runs(
        [RunRequest(c, tmp_path / v) for c, v in zip(cfgs, VARIANTS, strict=True)], progress=False
    )
    assert [r.steps for r in results] == [10, 10, 10]
    for v in VARIANTS:
        _assert_same(alone / v, tmp_path / v)


def test_a_multi_run_job_stopped_by_sigterm_resumes_bit_identically(
    alone, data_dir, tmp_path, monkeypatch
):
    """SIGTERM while three runs train together (one core): every run writes its checkpoint at
    the same step boundary, the message names each run and its step, and resuming all three
    gives each one its solo run's final state."""
    original = Run.train_step

    def train_step(self, *args):
        original(self, *args)
        if self.step == 6 and self.name == "sp_oe":
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(Run, "train_step", train_step)
    requests = [RunRequest(_cfg(v, data_dir), tmp_path / v) for v in VARIANTS]
    with _one_core(), pytest.raises(Preempted) as stopped:
        train_runs(requests, progress=False)
    monkeypatch.undo()
    assert stopped.value.exit_code == 143
    for v in VARIANTS:
        assert f"{v}: step 6/10" in str(stopped.value)
        assert load_checkpoint(tmp_path / v / "checkpoints" / "last.pt")["step"] == 6
        assert "stopped by SIGTERM at step 6" in (tmp_path / v / "train.log").read_text()
    with _one_core():
        train_runs([RunRequest(None, tmp_path / v, resume=True) for v in VARIANTS], progress=False)
    for v in VARIANTS:
        _assert_same(alone / v, tmp_path / v)


needs_two_cores = pytest.mark.skipif(len(usable_cores()) < 2, reason="needs two cores")


@needs_two_cores
def test_a_failing_worker_names_its_runs_and_the_others_stop_cleanly(data_dir, tmp_path):
    """One run diverges on its worker process: the job raises its TrainingError naming the
    worker's runs; the other worker's run is finished or checkpointed, no temporary left."""
    reqs = [
        RunRequest(_cfg("base", data_dir, "train.workers=2", "train.lr=1e30"), tmp_path / "base"),
        RunRequest(_cfg("sp_oe", data_dir, "train.workers=2"), tmp_path / "sp_oe"),
    ]
    with pytest.raises(TrainingError, match=r"training worker \d \(runs base\): base: non-finite"):
        train_runs(reqs, progress=False)
    assert load_checkpoint(tmp_path / "sp_oe" / "checkpoints" / "last.pt")["step"] > 0
    assert not [p for p in tmp_path.rglob("*.tmp-*")]


def _when_training(run_dirs, action) -> threading.Thread:
    """A thread that calls ``action()`` once every run of ``run_dirs`` has logged 2 steps, and
    never otherwise (a SIGTERM sent after a failed job would stop the whole test session)."""

    def wait() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            logs = [d / "steps.csv" for d in run_dirs]
            if all(p.is_file() and len(p.read_text().splitlines()) > 2 for p in logs):
                action()
                return
            time.sleep(0.02)

    thread = threading.Thread(target=wait)
    thread.start()
    return thread


WORKER_STEPS = 300
WORKER_SETTINGS = ("train.workers=2", f"train.max_steps={WORKER_STEPS}", "train.ckpt_every=0")


@needs_two_cores
def test_sigterm_stops_every_worker_with_checkpoints(data_dir, tmp_path):
    """SIGTERM to the job while two worker processes train: each run checkpoints at a step
    boundary, the message names every run and its step, exit code 143 (resuming is the
    one-process path's, tested above)."""
    runs = [tmp_path / v for v in ("base", "sp_oe")]
    steps = 800  # far more than either run trains before the signal, at step 100 of the slower
    settings = ("train.workers=2", f"train.max_steps={steps}", "train.ckpt_every=0")
    reqs = [RunRequest(_cfg(d.name, data_dir, *settings), d) for d in runs]
    killer = _when_training(runs, lambda: os.kill(os.getpid(), signal.SIGTERM))
    with pytest.raises(Preempted) as stopped:
        train_runs(reqs, progress=False)
    killer.join()
    assert stopped.value.exit_code == 143
    for d in runs:
        step = load_checkpoint(d / "checkpoints" / "last.pt")["step"]
        assert 0 < step < steps
        assert f"  {d.name}: step {step}/{steps}" in str(stopped.value)
        assert f"stopped by SIGTERM at step {step}" in (d / "train.log").read_text()


@needs_two_cores
def test_a_killed_worker_is_named_with_its_runs(data_dir, tmp_path):
    """SIGKILL to one worker process: the job raises TrainingError naming that worker's run
    and how it died; the other worker's run stops with a checkpoint (or had finished)."""
    import multiprocessing

    runs = [tmp_path / v for v in ("base", "sp_oe")]
    reqs = [RunRequest(_cfg(d.name, data_dir, *WORKER_SETTINGS), d) for d in runs]

    def kill_worker_1() -> None:
        (worker,) = [p for p in multiprocessing.active_children() if p.name == "fastmix-train-1"]
        os.kill(worker.pid, signal.SIGKILL)

    killer = _when_training(runs, kill_worker_1)
    with pytest.raises(TrainingError, match=r"worker 1 \(runs sp_oe\): .*died \(signal SIGKILL\)"):
        train_runs(reqs, progress=False)
    killer.join()
    # the other worker's run checkpointed at a step boundary, or had already finished
    assert 0 < load_checkpoint(runs[0] / "checkpoints" / "last.pt")["step"] <= WORKER_STEPS


def test_split_runs_keeps_views_together_and_balances():
    """The six variants on two workers: two shares of three, costs within one step of each
    other; every run in exactly one share; one share per run at most."""
    cfgs = [load_config(v) for v in ("base", "base_oe", "sp", "sp_oe", "pixmix", "pixmix_oe")]
    shares = split_runs(cfgs, 2)
    assert sorted(i for s in shares for i in s) == list(range(6))
    assert len(shares) == 2 and all(shares)
    kinds = [{cfgs[i]["augment"]["kind"] for i in s} for s in shares]
    assert not (kinds[0] & kinds[1] & {"pixmix"})  # the PixMix pair shares one loader
    assert split_runs(cfgs[:1], 2) == [[0]]
    many = split_runs(cfgs * 3, 2)
    assert sorted(i for s in many for i in s) == list(range(18))
