"""Train any number of runs in one job, from one pass over the data per stream and worker.

    fastmix train --variant all    ->  train_runs([six runs])
    fastmix train --variant sp_oe  ->  train(cfg, run_dir)

The loop, top to bottom:

1. Check everything that can refuse the job -- configs, devices, betons, resume points --
   before anything is written; then lock every run directory and prepare or resume it
   (``fastmix.train.run_dir``).
2. Group the runs by stream (``fastmix.data.streams``): runs with the same training beton,
   batch size and seed, at the same step, read one loader that yields the views they need
   (clean, salt-and-pepper, PixMix) and the outlier batches of the Outlier Exposure runs.
3. Every tick, each stream yields its next batch and every unfinished run of the stream takes
   one optimisation step on its view (``Run.train_step``). On a CPU with more than one core the
   runs are split among worker processes, one per core (``train.workers``), each stepping its
   share with its own loaders and one torch thread (``fastmix.train.procs``): a small CNN's
   step does not spread over two cores nearly as well as two steps side by side do, and Python
   threads side by side are held back by the GIL. On CUDA the steps run one after another.
4. A run at the end of an epoch validates, appends its metrics row and writes best.pt and
   last.pt; a run that trained all its steps writes ``done.json`` last.
5. SIGTERM / SIGINT (``fastmix.train.preemption``): after the steps in flight, every unfinished
   run writes its checkpoint, the job says where and exits with 143 / 130.

One progress bar covers the whole job (every run's steps, images/s, ETA).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from fastmix.config import Config
from fastmix.errors import ConfigError
from fastmix.runtime import Runtime, resolve_runtime, set_torch_threads, usable_cores
from fastmix.train import distributed as dist
from fastmix.train import run_dir as rd
from fastmix.train.preemption import Preempted, stop_on_signals
from fastmix.train.run import Run, require_betons


@dataclass
class TrainResult:
    run_dir: Path
    variant: str
    epochs: int
    steps: int
    best_val_acc: float
    final_val_acc: float
    seconds: float
    images_per_s: float


@dataclass(frozen=True)
class RunRequest:
    """A run to train: its resolved config and directory; ``resume`` continues the run the
    directory holds (its own config.toml then decides, and ``cfg`` may be None)."""

    cfg: Config | None
    run_dir: Path
    resume: bool = False


@dataclass
class _Checked:
    cfg: Config
    run_dir: Path
    resume: bool
    rt: Runtime
    betons: dict[str, Path]


def _check(req: RunRequest) -> _Checked:
    """Everything that can refuse a run, before anything is written."""
    run_dir = Path(req.run_dir)
    cfg = req.cfg
    if req.resume:
        if not (run_dir / rd.CONFIG_FILE).is_file():
            raise ConfigError(f"{run_dir}: nothing to resume (no config.toml)")
        cfg = rd.read_run_config(run_dir)
    assert cfg is not None
    tc = cfg["train"]
    rt = resolve_runtime(
        tc["device"], tc["precision"], tc["channels_last"], tc["compile"], tc["cuda_graphs"]
    )
    return _Checked(cfg, run_dir, req.resume, rt, require_betons(cfg))


MIN_STEPS_FOR_PROCESSES = 200  # auto: shorter runs train in the main process


def resolve_workers(setting: int, n_runs: int, device: torch.device, max_steps: int = 0) -> int:
    """``train.workers``: 0 = auto = one worker process per usable core (at most one per run)
    on a CPU; 1 on CUDA, under torchrun, and for runs capped below ``MIN_STEPS_FOR_PROCESSES``
    steps (``train.max_steps``: smoke tests), where starting the workers (a few seconds of
    imports each) costs more than it saves; otherwise the number, capped by the runs."""
    if device.type == "cuda" or dist.world_size() > 1:
        return 1
    if setting == 0 and 0 < max_steps < MIN_STEPS_FOR_PROCESSES:
        return 1
    n = setting or len(usable_cores())
    return max(1, min(n, n_runs))


class _Stream:
    """One stream's loader and the runs it feeds (all at the same step)."""

    def __init__(self, runs: list[Run], stream) -> None:
        self.runs = runs
        self.data = stream
        self.batches = stream.batches(runs[0].step)
        self.views = {id(r): stream.view_index(r.augmentation) for r in runs}

    @property
    def active(self) -> list[Run]:
        return [r for r in self.runs if not r.done]


def _group(checked: list[_Checked], starts: dict[Path, int]):
    """Runs keyed by what makes them share batches (``StreamKey`` + start step)."""
    from fastmix.data.streams import StreamKey

    groups: dict[tuple, list[_Checked]] = {}
    for c in checked:
        d, t = c.cfg["data"], c.cfg["train"]
        workers = min(d["num_workers"], len(usable_cores()))
        key = StreamKey(
            c.betons["train"], t["batch_size"], t["seed"], workers, dist.world_size() > 1
        )
        groups.setdefault((key, starts[c.run_dir]), []).append(c)
    return groups


def build_streams(checked: list[_Checked], torch_threads: int) -> tuple[list[_Stream], dict]:
    """Create the streams, then the runs (models, optimisers, resumed state) they feed."""
    from fastmix.augment.spec import Augmentation
    from fastmix.converters.beton import read_beton_arrays
    from fastmix.data.streams import OutlierKey, TrainStream

    starts = {c.run_dir: _start_step(c) for c in checked}
    streams, vals = [], {}
    for (key, _), members in _group(checked, starts).items():
        augs = list(dict.fromkeys(Augmentation.from_config(c.cfg["augment"]) for c in members))
        outliers = list(
            dict.fromkeys(
                _outlier_key(c.cfg, c.betons, OutlierKey) for c in members if c.cfg["oe"]["enabled"]
            )
        )
        stream = TrainStream(key, augs, outliers, _bank(members), torch_threads)
        runs = [
            Run(c.cfg, c.run_dir, c.rt, c.betons, stream.steps_per_epoch, c.resume) for c in members
        ]
        streams.append(_Stream(runs, stream))
        for r in runs:
            if r.betons["val"] not in vals:
                vals[r.betons["val"]] = read_beton_arrays(r.betons["val"])
    return streams, vals


def _bank(members: list[_Checked]):
    from fastmix.converters.beton import read_beton_arrays

    paths = {c.betons["mixing"] for c in members if "mixing" in c.betons}
    if len(paths) > 1:
        raise ConfigError(f"runs of one stream use different mixing sets: {sorted(paths)}")
    return read_beton_arrays(paths.pop())[0] if paths else None


def _outlier_key(cfg: Config, betons: dict[str, Path], cls):
    return cls(betons["outlier"], cfg["train"]["batch_size"] * cfg["oe"]["ratio"])


def _start_step(c: _Checked) -> int:
    if not c.resume or not rd.checkpoint_path(c.run_dir).exists():
        return 0
    from fastmix.config import config_hash
    from fastmix.train.checkpoint import load_checkpoint

    return int(load_checkpoint(rd.checkpoint_path(c.run_dir), config_hash(c.cfg))["step"])


def _prepare(c: _Checked) -> None:
    """With the run's lock held: clean leftovers of killed writes; start a new run's files
    (a resumed run truncates its logs when its checkpoint is loaded, ``Run``)."""
    if dist.is_main():
        rd.remove_leftovers(c.run_dir)
        if not c.resume:
            rd.prepare(c.cfg, c.run_dir)


def train_runs(
    requests: Sequence[RunRequest], progress: bool = True, log=print
) -> list[TrainResult]:
    """Train every requested run in this process (module docstring); return their results in
    the order given. Raises ``Preempted`` after checkpointing when SIGTERM / SIGINT arrived."""
    checked = [_check(r) for r in requests]
    if not checked:
        return []
    devices = {c.rt.device for c in checked}
    if len(devices) > 1:
        raise ConfigError(f"one job trains on one device; got {sorted(map(str, devices))}")
    device = devices.pop()
    dist.init_from_env(device)
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)  # FFCV's streams and events live on the current GPU
    tc = checked[0].cfg["train"]
    longest = (
        0
        if any(not c.cfg["train"]["max_steps"] for c in checked)
        else max(c.cfg["train"]["max_steps"] for c in checked)
    )
    n_workers = resolve_workers(tc["workers"], len(checked), device, longest)
    with contextlib.ExitStack() as locks:
        for c in checked:
            if dist.is_main():
                locks.enter_context(rd.lock(c.run_dir))
            _prepare(c)
        bar = _bar(len(checked), progress and dist.is_main())
        try:
            if n_workers > 1:
                from fastmix.train.procs import run_on_processes

                return run_on_processes(checked, n_workers, bar, log)
            streams, vals = build_streams(checked, 0)
            set_torch_threads()
            loop(streams, vals, _BarOutput(bar))
        finally:
            bar.close()
    runs = {r.run_dir: r for s in streams for r in s.runs}
    return [result(runs[c.run_dir]) for c in checked]


def _bar(n_runs: int, enabled: bool) -> tqdm:
    """The job's one progress bar; its total grows as the streams say how many steps they
    have (``add_total``)."""
    return tqdm(
        total=0,
        unit="step",
        dynamic_ncols=True,
        mininterval=0.5,
        desc=f"train {n_runs} run{'s' if n_runs > 1 else ''}",
        disable=not enabled,
    )


def add_total(bar: tqdm, steps: int) -> None:
    bar.total = (bar.total or 0) + steps
    bar.refresh()


class _BarOutput:
    """Where an in-process loop reports: the job's progress bar."""

    orphaned = False

    def __init__(self, bar: tqdm) -> None:
        self.bar, self.images, self.t0 = bar, 0, time.perf_counter()

    def total(self, steps: int) -> None:
        add_total(self.bar, steps)

    def update(self, steps: int, images: int) -> None:
        self.images += images
        self.bar.update(steps)
        rate = self.images / (time.perf_counter() - self.t0)
        self.bar.set_postfix_str(f"{rate:,.0f} img/s", refresh=False)

    def write(self, line: str) -> None:
        self.bar.write(line)

    def stopped(self, message: str) -> None:
        self.bar.write(message, file=sys.stderr)

    def flush(self) -> None:
        pass


def result(r: Run) -> TrainResult:
    return TrainResult(
        r.run_dir,
        r.cfg["variant"]["name"],
        r.epochs,
        r.step,
        r.best,
        r.val_acc,
        r.seconds,
        r.images / r.seconds if r.seconds else 0.0,
    )


def loop(streams: list[_Stream], vals: dict, out, signals=(signal.SIGTERM, signal.SIGINT)) -> None:
    """Tick until every run is done (module docstring, steps 3-5), reporting to ``out``
    (``total(steps)``, ``update(steps, images)``, ``write(line)``, ``stopped(message)``,
    ``flush()``; ``orphaned`` stops the loop as a SIGTERM would)."""
    out.total(sum(r.total - r.step for s in streams for r in s.runs))
    try:
        with stop_on_signals(signals) as stop:
            for r in (r for s in streams for r in s.runs if r.done):
                _finish(r)  # resumed after its last step: nothing to train
            while any(s.active for s in streams):
                steps = images = 0
                for s in streams:
                    active = s.active
                    if not active:
                        continue
                    views, y, outliers = next(s.batches)
                    for r in active:
                        xo = outliers.get(_okey(r)) if r.cfg["oe"]["enabled"] else None
                        line = _step(r, views[s.views[id(r)]], y, xo, vals)
                        if line:
                            out.write(line)
                        if r.done:
                            _finish(r)
                        steps, images = steps + 1, images + len(y)
                out.update(steps, images)
                if out.orphaned and not stop:
                    stop.signum = signal.SIGTERM
                if stop:
                    _preempt(streams, stop, out)
    finally:
        out.flush()
        for s in streams:
            s.batches.close()


def _okey(r: Run):
    from fastmix.data.streams import OutlierKey

    return _outlier_key(r.cfg, r.betons, OutlierKey)


def _step(r: Run, x, y, xo, vals: dict) -> str | None:
    """One run's step, and its epoch end or mid-epoch checkpoint when due; the log line of an
    epoch end."""
    r.train_step(x, y, xo)
    if r.at_epoch_end:
        return r.end_epoch(vals[r.betons["val"]])
    if r.wants_mid_epoch_checkpoint:
        r.save("last")
    return None


def _finish(r: Run) -> None:
    """The last write of a run that trained all its steps: ``fastmix run`` skips only these."""
    if dist.is_main():
        rd.write_done(r.run_dir, r.cfg, r.step, r.epochs, r.best)
    dist.barrier()


def _preempt(streams: list[_Stream], stop, out) -> None:
    """Checkpoint every unfinished run at this step boundary, say where, and raise."""
    lines = []
    for s in streams:
        for r in s.active:
            path = r.save("last")
            lines.append(
                f"  {r.name}: step {r.step}/{r.total} (epoch {r.step // r.spe + 1}), "
                f"checkpoint {path}"
            )
            rd.append_log(
                r.run_dir,
                f"{r.name}: stopped by {stop.name} at step {r.step}; "
                f"resume with fastmix train --resume {r.run_dir}",
            )
    msg = (
        f"stopped by {stop.name} at a step boundary; checkpoints written:\n"
        + "\n".join(lines)
        + "\nresume with `fastmix train --resume RUN` for each run, or `fastmix run`"
    )
    out.stopped(msg)
    raise Preempted(stop.signum, msg)


def train(
    cfg: Config | None, run_dir: str | os.PathLike, resume: bool = False, progress: bool = True
) -> TrainResult:
    """Train one run into ``run_dir`` (or continue it with ``resume``)."""
    return train_runs([RunRequest(cfg, Path(run_dir), resume)], progress=progress)[0]
