"""Interrupted and failing training through the real CLI.

* SIGKILL a real ``fastmix train`` subprocess (the whole process group) mid-epoch at a random
  step, resume it with ``fastmix train --resume RUN``, SIGKILL the resumed run, and so on (one
  kill before the first checkpoint, the others after it); the last resume finishes, and its
  weights, optimizer state and per-step losses equal an uninterrupted run's exactly (CPU).
  tests/test_train.py has the in-process version (simulated interruption) and the truncated /
  foreign-checkpoint refusals.
* SIGTERM / SIGINT to a real ``fastmix train`` subprocess (one run, and six runs in one
  process): exit status 143 / 130 after a checkpoint at the next step boundary, the message
  names every run and its step, and ``--resume`` ends bit-identical to an uninterrupted run. A
  second signal ends the process at once and leaves nothing that a later run trusts.
* The progress bar moves within the first epoch.
* A NaN / infinite loss through the CLI: exit status 2, the message names the step, and the
  last good checkpoint is kept (finite).

``FASTMIX_TRAIN_KILLS`` (default 3) sets the number of kills, ``FASTMIX_KILL_SEED`` the seed.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fastmix.cli import main
from fastmix.config import VARIANTS as VARIANTS_ALL
from fastmix.train.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]
VARIANT = "pixmix_oe"  # the most state to restore: PixMix draws and the outlier stream
STEPS, CKPT_EVERY = 16, 4
KILLS = int(os.environ.get("FASTMIX_TRAIN_KILLS", "3"))
SETTINGS = [
    f"train.max_steps={STEPS}",
    f"train.ckpt_every={CKPT_EVERY}",
    "train.log_every=1",
    "train.device='cpu'",
]


def _train_cmd(data: Path, out: Path) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "fastmix",
        "train",
        "--variant",
        VARIANT,
        "--config",
        "smoke",
        "--data",
        str(data),
        "--out",
        str(out),
        "--no-progress",
    ]
    for s in SETTINGS:
        cmd += ["--set", s]
    return cmd


def _run(cmd: list[str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as f:
        f.write(f"\n$ {' '.join(cmd)}\n".encode())
        return subprocess.Popen(
            cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, start_new_session=True
        )


def _logged_steps(run: Path) -> int:
    try:
        return max(0, len((run / "steps.csv").read_text().splitlines()) - 1)
    except OSError:
        return 0


def _losses(run: Path) -> list[str]:
    return (run / "steps.csv").read_text().splitlines()[1:]


@pytest.fixture(scope="module")
def reference(data_dir, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("train-reference")
    proc = _run(_train_cmd(data_dir, root / "runs"), root / "log.txt")
    assert proc.wait(timeout=600) == 0, (root / "log.txt").read_text()
    run = root / "runs" / f"{VARIANT}-s0"
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == STEPS
    return run


def _kill_after(
    proc: subprocess.Popen, run: Path, target: int, rng: random.Random, log: Path
) -> int:
    """SIGKILL the whole process group once ``target`` steps are logged (plus up to 30 ms,
    so the kill also lands inside a step or a checkpoint write); the step reached."""
    try:
        while proc.poll() is None and _logged_steps(run) < target:
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.03))
        assert proc.poll() is None, f"run finished before the kill\n{log.read_text()}"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert proc.returncode == -signal.SIGKILL
    return _logged_steps(run)


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(reference, data_dir, tmp_path):
    """Kill, resume, kill the resumed run, ... (``KILLS`` kills), then a resume that finishes.

    The first kill lands before the first checkpoint (the resume starts over), the later ones
    after it, each inside a resumed run. After every kill ``last.pt`` loads (never torn) and
    holds a checkpoint step not past the kill."""
    seed = int(os.environ.get("FASTMIX_KILL_SEED", time.time_ns() % 2**32))
    print(f"FASTMIX_KILL_SEED={seed}")
    rng = random.Random(seed)
    ref = load_checkpoint(reference / "checkpoints" / "last.pt")
    out, log = tmp_path / "runs", tmp_path / "log.txt"
    run = out / f"{VARIANT}-s0"
    bounds = [(1, CKPT_EVERY - 1)] + [
        (
            CKPT_EVERY + (STEPS - 4 - CKPT_EVERY) * k // (KILLS - 1),
            CKPT_EVERY + (STEPS - 4 - CKPT_EVERY) * (k + 1) // (KILLS - 1),
        )
        for k in range(KILLS - 1)
    ]
    proc = _run(_train_cmd(data_dir, out), log)
    reached = 0
    for i, (lo, hi) in enumerate(bounds):
        target = rng.randint(max(lo, reached + 1), max(hi, reached + 1))
        reached = _kill_after(proc, run, target, rng, log)
        assert reached < STEPS
        last = run / "checkpoints" / "last.pt"
        saved = load_checkpoint(last)["step"] if last.exists() else 0
        print(
            f"kill {i + 1}: SIGKILL after step {reached} (target {target}); last.pt holds "
            f"step {saved}"
        )
        assert saved % CKPT_EVERY == 0 and saved <= reached
        proc = _run(
            [sys.executable, "-m", "fastmix", "train", "--resume", str(run), "--no-progress"], log
        )
    assert proc.wait(timeout=600) == 0, log.read_text()
    got = load_checkpoint(run / "checkpoints" / "last.pt")
    assert got["step"] == STEPS and got["config_hash"] == ref["config_hash"]
    for key, value in ref["model"].items():
        assert torch.equal(value, got["model"][key]), f"{key} differs"
    for a, b in zip(
        ref["optimizer"]["state"].values(), got["optimizer"]["state"].values(), strict=True
    ):
        assert torch.equal(a["momentum_buffer"], b["momentum_buffer"])
    assert _losses(run) == _losses(reference), "step log differs"
    assert got["best_val_acc"] == ref["best_val_acc"]


def test_non_finite_loss_through_the_cli(data_dir, tmp_path, capsys):
    """lr 1e30 blows the weights up: the CLI stops with status 2, names the step, keeps the
    last good checkpoint (every value finite) and writes no checkpoint after the bad step."""
    out = tmp_path / "runs"
    code = main(
        [
            "train",
            "--variant",
            "base",
            "--config",
            "smoke",
            "--data",
            str(data_dir),
            "--out",
            str(out),
            "--no-progress",
            "--set",
            "train.lr=1e30",
            "--set",
            "train.warmup_frac=0.0",
            "--set",
            "train.ckpt_every=1",
            "--set",
            "train.max_steps=30",
            "--set",
            "train.device='cpu'",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "fastmix train: error: base-s0: non-finite loss" in err
    assert "last good checkpoint" in err
    step = int(re.search(r"(?:at|after) step (\d+)", err).group(1))
    last = out / "base-s0" / "checkpoints" / "last.pt"
    if last.exists():
        ckpt = load_checkpoint(last)
        assert ckpt["step"] <= step
        assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def _wait_steps(proc: subprocess.Popen, run: Path, target: int, log: Path) -> None:
    while proc.poll() is None and _logged_steps(run) < target:
        time.sleep(0.002)
    assert proc.poll() is None, f"run finished before the signal\n{log.read_text()}"


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_checkpoints_at_the_next_step_then_resume_equals_uninterrupted(
    signum, reference, data_dir, tmp_path
):
    """The first SIGTERM / SIGINT: no step is lost (the checkpoint holds every logged step),
    exit 128 + signal, the path printed; the resumed run equals the uninterrupted one."""
    out, log = tmp_path / "runs", tmp_path / "log.txt"
    run = out / f"{VARIANT}-s0"
    proc = _run(_train_cmd(data_dir, out), log)
    _wait_steps(proc, run, 6, log)
    proc.send_signal(signum)
    assert proc.wait(timeout=300) == 128 + signum, log.read_text()
    text = log.read_text()
    saved = load_checkpoint(run / "checkpoints" / "last.pt")["step"]
    assert saved == _logged_steps(run) >= 6 and saved < STEPS
    assert f"stopped by {signal.Signals(signum).name}" in text
    assert f"{VARIANT}-s0: step {saved}/{STEPS}" in text and "last.pt" in text
    resumed = _run(
        [sys.executable, "-m", "fastmix", "train", "--resume", str(run), "--no-progress"], log
    )
    assert resumed.wait(timeout=600) == 0, log.read_text()
    ref, got = (load_checkpoint(r / "checkpoints" / "last.pt") for r in (reference, run))
    for key, value in ref["model"].items():
        assert torch.equal(value, got["model"][key]), key
    assert _losses(run) == _losses(reference)


@pytest.mark.slow
def test_sigterm_stops_all_six_runs_of_one_job_and_each_resumes(data_dir, tmp_path):
    """``--variant all``: six runs in one process. SIGTERM: every run checkpoints at the same
    step and is named with it; resuming each finishes it with its uninterrupted weights."""
    settings = ["--set", "train.max_steps=10", "--set", "train.log_every=1"]
    base = [
        sys.executable,
        "-m",
        "fastmix",
        "train",
        "--variant",
        "all",
        "--config",
        "smoke",
        "--data",
        str(data_dir),
        "--no-progress",
        *settings,
    ]
    log = tmp_path / "log.txt"
    ref = _run([*base, "--out", str(tmp_path / "ref")], log)
    assert ref.wait(timeout=600) == 0, log.read_text()
    out = tmp_path / "runs"
    proc = _run([*base, "--out", str(out)], log)
    _wait_steps(proc, out / "pixmix_oe-s0", 4, log)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=300) == 143, log.read_text()
    steps = {
        v: load_checkpoint(out / f"{v}-s0" / "checkpoints" / "last.pt")["step"]
        for v in VARIANTS_ALL
    }
    assert len(set(steps.values())) == 1 and 4 <= steps["base"] < 10
    text = log.read_text()
    assert all(f"{v}-s0: step {steps[v]}/10" in text for v in VARIANTS_ALL)
    resume = [sys.executable, "-m", "fastmix", "train", "--no-progress"]
    for v in VARIANTS_ALL:
        resume += ["--resume", str(out / f"{v}-s0")]
    assert _run(resume, log).wait(timeout=600) == 0, log.read_text()
    for v in VARIANTS_ALL:
        a = load_checkpoint(tmp_path / "ref" / f"{v}-s0" / "checkpoints" / "last.pt")["model"]
        b = load_checkpoint(out / f"{v}-s0" / "checkpoints" / "last.pt")["model"]
        assert all(torch.equal(a[k], b[k]) for k in a), v


@pytest.mark.slow
def test_a_second_signal_exits_at_once_and_nothing_half_written_is_trusted(data_dir, tmp_path):
    out, log = tmp_path / "runs", tmp_path / "log.txt"
    run = out / f"{VARIANT}-s0"
    proc = _run(_train_cmd(data_dir, out), log)
    _wait_steps(proc, run, 3, log)
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=300)
    assert code in (-signal.SIGTERM, 143), log.read_text()  # 143: both handled as one stop
    last = run / "checkpoints" / "last.pt"
    if last.exists():
        assert load_checkpoint(last)["step"] <= _logged_steps(run)
    assert not (run / "done.json").exists()
    resumed = _run(
        [sys.executable, "-m", "fastmix", "train", "--resume", str(run), "--no-progress"], log
    )
    assert resumed.wait(timeout=600) == 0, log.read_text()
    assert load_checkpoint(last)["step"] == STEPS and (run / "done.json").is_file()
    assert not list(run.rglob("*.tmp-*"))


@pytest.mark.slow
def test_progress_moves_within_the_first_epoch(data_dir, tmp_path):
    """One bar for the job, redrawn while the first epoch runs (its frames counted in the
    captured stderr before the first epoch's log line), with images/s and an ETA."""
    cmd = [
        sys.executable,
        "-m",
        "fastmix",
        "train",
        "--variant",
        "base",
        "--config",
        "lenet",
        "--data",
        str(data_dir),
        "--out",
        str(tmp_path),
        "--set",
        "train.epochs=1",
        "--set",
        "model.width=4",
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    first_epoch = proc.stderr.split("epoch 1/1")[0]
    frames = [f for f in re.split(r"[\r\n]", first_epoch) if f.startswith("train 1 run")]
    counts = [m.groups() for f in frames if (m := re.search(r"\| *(\d+)/(\d+)", f))]
    steps = int(counts[0][1])  # one whole epoch: 430 steps of 128, about 4 s at width 4
    assert len({int(d) for d, _ in counts if 0 < int(d) < steps}) >= 3, frames[-5:]
    assert any("img/s" in f and "<" in f for f in frames)  # throughput and time left
