"""Train several runs at once: one ``fastmix train`` process per group of cores.

On the 2-core development machine, training two models side by side, each process pinned to its
own core (``os.sched_setaffinity``, one torch thread, one loader thread), finished 1.40x sooner
than training them one after the other on both cores (bench/bench_concurrency.py, base + sp, one
epoch each; bench/RESULTS.md): a small ConvNet's step does not scale from 1 to 2 intra-op
threads nearly as well as two independent processes do. Hence ``--jobs auto`` = concurrent on a
CPU: ``min(runs, cores)`` jobs of ``cores // jobs`` cores each. On CUDA it stays sequential (one
GPU, no measurement yet of several processes sharing it).

Each child writes its output to ``<run dir>/train.log``; the parent shows one progress bar over
the epochs of all runs (read from their ``metrics.csv``) and prints a line per finished run.
Ctrl-C reaches the children too (same process group): each stops with its last checkpoint
(written atomically every epoch, or every ``train.ckpt_every`` steps), the parent waits for
them and re-raises, and ``--resume`` / ``fastmix run`` continue from there.

Numerics: a run's weights depend on the thread count at the level of float rounding (torch's
reductions), so a model trained on one core is not bit-identical to the same seed trained on
two; each is reproducible in its own setting.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from fastmix.errors import TrainingError
from fastmix.runtime import usable_cores
from fastmix.train.trainer import TrainResult


@dataclass(frozen=True)
class Job:
    """One training run: ``args`` for ``fastmix train`` and the run directory it writes."""

    run_dir: Path
    variant: str
    args: tuple[str, ...]
    oe: bool = False  # Outlier Exposure runs take about twice as long: started first
    epochs: int = 1  # for the progress bar


def _epochs_done(job: Job) -> int:
    """Finished epochs of a run, from the rows of its ``metrics.csv`` (0 before the first)."""
    try:
        with open(job.run_dir / "metrics.csv") as f:
            return min(job.epochs, max(0, sum(1 for _ in f) - 1))
    except OSError:
        return 0


def resolve_jobs(jobs: str | int, n_runs: int, device: str) -> int:
    """``auto``: on a CPU ``min(runs, cores)`` (measured faster), on CUDA 1; else the number."""
    if n_runs <= 1:
        return 1
    if str(jobs) == "auto":
        import torch

        cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
        return 1 if cuda else max(1, min(n_runs, len(usable_cores())))
    try:
        n = int(jobs)
    except ValueError:
        raise TrainingError(f"--jobs must be 'auto' or a positive integer, got {jobs!r}") from None
    if n < 1:
        raise TrainingError(f"--jobs must be 'auto' or a positive integer, got {jobs!r}")
    return min(n, n_runs)


def core_groups(n_jobs: int, cores: list[int]) -> list[set[int]]:
    """Split ``cores`` into ``n_jobs`` disjoint groups of ``len(cores) // n_jobs`` cores (the
    remainder unused); with more jobs than cores, jobs share cores round-robin."""
    if n_jobs >= len(cores):
        return [{cores[i % len(cores)]} for i in range(n_jobs)]
    size = len(cores) // n_jobs
    return [set(cores[i * size : (i + 1) * size]) for i in range(n_jobs)]


def result_from_run_dir(run_dir: Path, variant: str) -> TrainResult:
    """The ``TrainResult`` of a finished run, read back from its ``metrics.csv``."""
    path = run_dir / "metrics.csv"
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise TrainingError(f"{path}: no finished epoch recorded")
    seconds = sum(float(r["seconds"]) for r in rows)
    images = sum(float(r["seconds"]) * float(r["images_per_s"]) for r in rows)
    return TrainResult(run_dir, variant, int(rows[-1]["epoch"]), int(rows[-1]["step"]),
                       max(float(r["val_acc"]) for r in rows), float(rows[-1]["val_acc"]),
                       seconds, images / seconds if seconds else 0.0)  # fmt: skip


def _start(job: Job, cores: set[int]) -> subprocess.Popen:
    """Start ``job`` pinned to ``cores``, its output appended to ``<run dir>/train.log``."""
    job.run_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "fastmix", "train", *job.args, "--no-progress"]
    with open(job.run_dir / "train.log", "ab") as log:  # the child keeps its own copy
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                preexec_fn=lambda: os.sched_setaffinity(0, cores))  # fmt: skip


def train_concurrently(jobs: list[Job], n_jobs: int, progress: bool = True,
                       log=print) -> list[TrainResult]:  # fmt: skip
    """Run ``jobs`` with at most ``n_jobs`` at a time, each slot pinned to its own cores; return
    their results in the order given. A failed run stops the scheduling of new ones and raises
    ``TrainingError`` naming it and the end of its log, after the running ones finish."""
    from tqdm import tqdm

    groups = core_groups(n_jobs, usable_cores())
    queue = sorted(jobs, key=lambda j: not j.oe)  # longest first: shorter makespan
    running: dict[int, tuple[Job, subprocess.Popen]] = {}
    failed: list[str] = []
    started: list[Job] = []
    bar = tqdm(total=sum(j.epochs for j in jobs), unit="epoch", disable=not progress,
               desc=f"training {len(jobs)} runs, {n_jobs} at a time")  # fmt: skip
    try:
        while queue or running:
            for slot in range(n_jobs):
                if slot not in running and queue and not failed:
                    job = queue.pop(0)
                    running[slot] = (job, _start(job, groups[slot]))
                    started.append(job)
            time.sleep(0.2)
            done = sum(_epochs_done(j) for j in started)
            if done != bar.n:
                bar.update(done - bar.n)
            for slot, (job, proc) in list(running.items()):
                if proc.poll() is None:
                    continue
                del running[slot]
                if proc.returncode != 0:
                    tail = (job.run_dir / "train.log").read_text(errors="replace")[-1500:]
                    code = proc.returncode
                    failed.append(f"{job.variant} ({job.run_dir}) exited {code}:\n{tail}")
                else:
                    r = result_from_run_dir(job.run_dir, job.variant)
                    log(f"{r.variant}: best val acc {r.best_val_acc:.4f}, {r.images_per_s:.0f} "
                        f"img/s, {r.seconds:.1f} s (cores {sorted(groups[slot])})")  # fmt: skip
            if not running and failed:
                break
    except KeyboardInterrupt:
        for _, proc in running.values():  # they got the SIGINT too: let them stop cleanly
            proc.wait()
        raise
    finally:
        bar.close()
    if failed:
        raise TrainingError("training failed: " + "\n".join(failed))
    return [result_from_run_dir(j.run_dir, j.variant) for j in jobs]
