"""A CPU job's runs on worker processes, one per core, each stepping its share of the runs.

Python threads stepping small CNNs side by side barely use a second core (the dispatcher and
the GIL, not the arithmetic, bound a LeNet step); processes do. The parent has checked, locked
and prepared every run directory (``fastmix.train.trainer``); it then

1. splits the runs into shares (``split_runs``): runs of one augmentation stay together where
   the balance allows, so a share's loader computes each view once;
2. starts one process per share (``spawn``): it builds its own loaders and runs
   (``trainer.build_streams``), one torch thread, and steps them as a one-process job would --
   so a run's inputs and weights do not depend on which share it is in or beside which runs;
3. draws one progress bar from the workers' reports (steps, images, log lines);
4. on SIGTERM / SIGINT tells every worker to stop: each checkpoints its unfinished runs at the
   next step boundary and reports where; the job then raises ``Preempted`` with every run's
   checkpoint. A worker ignores SIGINT itself (Ctrl-C reaches the whole process group; the
   parent decides) and stops the same way when its parent is gone;
5. when a worker fails or dies, stops the others (they checkpoint) and raises the worker's
   error, naming its runs; every file is written atomically, so nothing is torn.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import os
import queue as queue_mod
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence

from fastmix.errors import ConfigError, DataError, TrainingError

REPORT_EVERY_S = 0.25  # how often a worker sends its step count to the parent
STOP_GRACE_S = 45.0  # a worker still running this long after SIGTERM is killed
SILENCE_S = 900.0  # no report from any worker this long: the live ones are stuck; stop them
STEP_COST = {False: 1.0, True: 2.0}  # a run's step, without / with Outlier Exposure
VIEW_COST = {"none": 0.0, "salt_pepper": 0.3, "pixmix": 1.5}  # a share's loader, per view
OUTLIER_COST = 0.3  # a share's outlier loader
USER_ERRORS = (ConfigError, DataError, TrainingError)  # re-raised as themselves, runs named


def _run_cost(cfg) -> float:
    return STEP_COST[bool(cfg["oe"]["enabled"])]


def _share_cost(cfgs: Sequence) -> float:
    """Relative cost of a share: its runs' steps plus each distinct view and outlier stream."""
    views = {c["augment"]["kind"] for c in cfgs}
    oe = any(c["oe"]["enabled"] for c in cfgs)
    return (
        sum(_run_cost(c) for c in cfgs)
        + sum(VIEW_COST.get(v, 1.0) for v in views)
        + (OUTLIER_COST if oe else 0.0)
    )


def split_runs(cfgs: Sequence, n: int) -> list[list[int]]:
    """Indices of ``cfgs`` in ``n`` shares of about equal cost (``_share_cost``): the best of
    every assignment for up to 8 runs, else greedy (largest run first, to the cheapest share).
    Every share gets at least one run (``n`` <= the runs)."""
    m = len(cfgs)
    n = max(1, min(n, m))
    if n == 1:
        return [list(range(m))]
    if m <= 8:
        best, best_cost = None, float("inf")
        for assign in itertools.product(range(n), repeat=m - 1):
            assign = (0, *assign)  # share 0 holds run 0: symmetric assignments once
            shares = [[i for i in range(m) if assign[i] == s] for s in range(n)]
            if any(not s for s in shares):
                continue
            cost = max(_share_cost([cfgs[i] for i in s]) for s in shares)
            if cost < best_cost - 1e-9:
                best, best_cost = shares, cost
        return best
    shares: list[list[int]] = [[] for _ in range(n)]
    for i in sorted(range(m), key=lambda i: -_run_cost(cfgs[i])):
        target = min(range(n), key=lambda s: (len(shares[s]) > 0, _share_cost(
            [cfgs[j] for j in shares[s]] + [cfgs[i]]
        )))  # fmt: skip
        shares[target].append(i)
    return [sorted(s) for s in shares]


# ---- the worker process


def _worker_main(index: int, checked: list, parent_pid: int, reports) -> None:
    """One worker: train ``checked`` (already prepared by the parent) and report to the parent
    through ``reports``: ("total", steps), ("steps", n, images), ("line", text), then one of
    ("done", results), ("preempted", signum, lines), ("error", exception or text)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides on Ctrl-C
    from fastmix.runtime import set_torch_threads
    from fastmix.train import trainer
    from fastmix.train.preemption import Preempted

    try:
        from fastmix.registry import load_plugins

        for c in checked:  # the parent's plugins: this process starts with the built-ins only
            load_plugins(c.cfg.get("variant", {}).get("plugins", []))
        set_torch_threads(1)
        streams, vals = trainer.build_streams(checked, 1)
        set_torch_threads(1)
        reporter = _Reporter(reports, parent_pid)
        trainer.loop(streams, vals, reporter, signals=(signal.SIGTERM,))
        runs = {r.run_dir: r for s in streams for r in s.runs}
        reports.put(("done", index, [trainer.result(runs[c.run_dir]) for c in checked]))
    except Preempted as e:
        reports.put(("preempted", index, e.signum, str(e)))
    except USER_ERRORS as e:
        reports.put(("error", index, e))
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which re-raises
        reports.put(("error", index, f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))


class _Reporter:
    """A worker's side of the progress bar: step counts batched every ``REPORT_EVERY_S``, log
    lines at once; ``orphaned`` when the parent is gone."""

    def __init__(self, reports, parent_pid: int) -> None:
        self.reports, self.parent_pid = reports, parent_pid
        self.steps = self.images = 0
        self.last = time.perf_counter()

    def total(self, steps: int) -> None:
        self.reports.put(("total", steps))

    def stopped(self, message: str) -> None:
        pass  # the parent writes every worker's message together

    def update(self, steps: int, images: int) -> None:
        self.steps += steps
        self.images += images
        now = time.perf_counter()
        if now - self.last >= REPORT_EVERY_S:
            self.flush()
            self.last = now

    def flush(self) -> None:
        if self.steps:
            self.reports.put(("steps", self.steps, self.images))
            self.steps = self.images = 0

    def write(self, line: str) -> None:
        self.reports.put(("line", line))

    @property
    def orphaned(self) -> bool:
        return os.getppid() != self.parent_pid


# ---- the parent


def run_on_processes(checked: list, n: int, bar, log: Callable[[str], None]) -> list:
    """Train ``checked`` (prepared, locked by the caller) on ``n`` worker processes (module
    docstring); return their ``TrainResult`` in the order given."""
    from fastmix.train.preemption import Preempted, stop_on_signals
    from fastmix.train.trainer import add_total

    shares = split_runs([c.cfg for c in checked], n)
    ctx = mp.get_context("spawn")
    reports = ctx.Queue()
    procs = [
        ctx.Process(
            target=_worker_main,
            args=(i, [checked[j] for j in share], os.getpid(), reports),
            name=f"fastmix-train-{i}",
            daemon=True,
        )
        for i, share in enumerate(shares)
    ]
    names = [[checked[j].run_dir.name for j in share] for share in shares]
    results: dict[int, list] = {}
    preempted: dict[int, tuple[int, str]] = {}
    errors: dict[int, object] = {}
    t0, images = time.perf_counter(), 0
    with stop_on_signals() as stop:
        for p in procs:
            p.start()
        stopping, checked_at = False, time.perf_counter()
        heard_at = checked_at
        try:
            while len(results) + len(preempted) + len(errors) < len(procs):
                if (stop or errors) and not stopping:
                    stopping, stopped_at = True, time.perf_counter()
                    _stop_all(procs)
                if time.perf_counter() - checked_at > 1.0:
                    _check_alive(procs, results, preempted, errors, drained=False)
                    checked_at = time.perf_counter()
                    if stopping and checked_at - stopped_at > STOP_GRACE_S:
                        _kill_unresponsive(procs, results, preempted, errors)
                try:
                    msg = reports.get(timeout=0.5)
                except queue_mod.Empty:
                    _check_alive(procs, results, preempted, errors, drained=True)
                    if time.perf_counter() - heard_at > SILENCE_S and not stopping:
                        _silent(procs, results, preempted, errors)
                    continue
                heard_at = time.perf_counter()
                kind = msg[0]
                if kind == "total":
                    add_total(bar, msg[1])
                elif kind == "steps":
                    images += msg[2]
                    bar.update(msg[1])
                    rate = images / (time.perf_counter() - t0)
                    bar.set_postfix_str(f"{rate:,.0f} img/s", refresh=False)
                elif kind == "line":
                    bar.write(msg[1])
                elif kind == "done":
                    results[msg[1]] = msg[2]
                elif kind == "preempted":
                    preempted[msg[1]] = (msg[2], msg[3])
                elif kind == "error":
                    errors[msg[1]] = msg[2]
        finally:
            for p in procs:
                p.join(timeout=30)
                if p.is_alive():
                    p.kill()
                    p.join()
        if errors:
            _raise_worker_error(errors, names, preempted)
        if preempted:
            signum = stop.signum or next(iter(preempted.values()))[0]
            msg = "\n".join(m for _, (_, m) in sorted(preempted.items()))
            bar.write(msg, file=sys.stderr)
            raise Preempted(signum, msg)
    by_dir = {r.run_dir: r for rs in results.values() for r in rs}
    return [by_dir[c.run_dir] for c in checked]


def _stop_all(procs) -> None:
    """SIGTERM every live worker once: each checkpoints its runs at the next step boundary."""
    for p in procs:
        if p.is_alive() and p.pid is not None:
            os.kill(p.pid, signal.SIGTERM)


def _silent(procs, results, preempted, errors) -> None:
    """No worker has reported for ``SILENCE_S`` (a training worker reports its steps every
    ``REPORT_EVERY_S``): each live one is stuck; recorded as its error, which stops the job
    (SIGTERM, then ``_kill_unresponsive``)."""
    for i, p in enumerate(procs):
        if i not in results and i not in preempted and i not in errors and p.is_alive():
            errors[i] = f"the worker process sent nothing for {SILENCE_S:.0f} s (stuck)"


def _kill_unresponsive(procs, results, preempted, errors) -> None:
    """A worker still running ``STOP_GRACE_S`` after SIGTERM (stuck where its signal handler
    cannot run) is killed and recorded as that worker's error, so the job ends."""
    for i, p in enumerate(procs):
        if i in results or i in preempted or i in errors or not p.is_alive():
            continue
        p.kill()
        errors[i] = f"the worker process did not stop within {STOP_GRACE_S:.0f} s of SIGTERM"


def _check_alive(procs, results, preempted, errors, drained: bool) -> None:
    """A worker that exited without its final report died (killed, out of memory, a crash in
    native code): record it as that worker's error. A worker that exits by itself has sent its
    report first, so a clean exit counts only once the reports are ``drained``."""
    for i, p in enumerate(procs):
        code = p.exitcode
        if i in results or i in preempted or i in errors or code is None:
            continue
        if code == 0 and not drained:
            continue
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        errors[i] = f"the worker process died ({how})"


def _raise_worker_error(errors: dict, names: list[list[str]], preempted: dict) -> None:
    """Re-raise the error recorded first (one of ``USER_ERRORS`` as itself), naming its
    worker's runs and where the others stopped: a worker stopped because of it (SIGTERM while
    it was outside its training loop) is recorded later."""
    i, err = next(iter(errors.items()))
    where = f"training worker {i} (runs {', '.join(names[i])})"
    others = "".join(f"\n{m}" for _, (_, m) in sorted(preempted.items()))
    if isinstance(err, USER_ERRORS):
        raise type(err)(f"{where}: {err}{others}") from None
    raise TrainingError(
        f"{where}: {err}\nthe runs' last checkpoints are kept; resume with `fastmix train "
        f"--resume RUN` or `fastmix run`{others}"
    )
