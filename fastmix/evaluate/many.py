"""Evaluate several runs: on a CPU with two or more cores, one worker process per core.

An evaluation is mostly one-thread work between the large forward passes (the metrics, the
detectors' fits, the writes), so two runs side by side use a second core that one run's worker
threads leave idle. Each worker process is pinned to one core: it then evaluates exactly as a
one-core machine would, every set's logits on one torch thread, as they are in a one-process
evaluation (``fastmix.evaluate.evaluate``), so the fp32 logits are the same either way. Each
worker reads the sets once (its own cache) for all the runs it is given. On CUDA, with one
core or one run, the runs are evaluated one after another in this process, sharing one cache.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from fastmix.errors import DataError

_CACHE: dict = {}  # a worker process's sets cache, shared by the runs it evaluates


def _pin(cores, plugins: list[str]) -> None:
    """Worker initializer: load the parent's plugins (a run may need one its config.toml does
    not record), take one core from the queue ``cores`` and run on it alone."""
    from fastmix.registry import load_plugins

    load_plugins(plugins)
    core = cores.get()
    try:
        os.sched_setaffinity(0, {core})
    except (AttributeError, OSError):
        pass
    from fastmix.runtime import set_torch_threads

    set_torch_threads(1)


def _one(run_dir: Path, kwargs: dict[str, Any]) -> dict[str, Any]:
    from fastmix.evaluate.evaluate import evaluate_run

    return evaluate_run(run_dir, sets_cache=_CACHE, progress=False, **kwargs)


def evaluate_runs(
    run_dirs: Sequence[str | os.PathLike],
    data_dir: str | os.PathLike | None = None,
    seed: int = 0,
    *,
    which: str = "best",
    device: str = "auto",
    precision: str = "auto",
    progress: bool = True,
    log=print,
) -> list[dict[str, Any]]:
    """``evaluate_run`` for every run of ``run_dirs`` (module docstring); their results in the
    order given. ``log`` gets one line per run as it starts (one process) or ends (workers)."""
    from tqdm import tqdm

    from fastmix.evaluate.evaluate import evaluate_run
    from fastmix.evaluate.inference import resolve_inference
    from fastmix.registry import loaded_plugins
    from fastmix.runtime import usable_cores

    dirs = [Path(d) for d in run_dirs]
    kwargs = dict(data_dir=data_dir, seed=seed, which=which, device=device, precision=precision)
    cores = usable_cores()
    resolved, _ = resolve_inference(device, precision)
    n = min(len(cores), len(dirs)) if resolved == "cpu" else 1
    if n <= 1:
        cache: dict = {}
        out = []
        for d in dirs:
            log(f"evaluating {d} ({which}) ...")
            out.append(evaluate_run(d, sets_cache=cache, progress=progress, **kwargs))
        return out
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    for c in cores[:n]:
        queue.put(c)
    bar = tqdm(total=len(dirs), desc=f"eval {len(dirs)} runs", unit="run", disable=not progress)
    results: dict[Path, dict[str, Any]] = {}
    init = dict(initializer=_pin, initargs=(queue, loaded_plugins()))
    with bar, ProcessPoolExecutor(n, mp_context=ctx, **init) as pool:
        futures = {pool.submit(_one, d, kwargs): d for d in dirs}
        try:
            for f, d in futures.items():
                results[d] = f.result()
                bar.write(f"evaluated {d} ({which})")
                bar.update(1)
        except BrokenProcessPool:
            left = [str(d) for d in dirs if d not in results]
            raise DataError(
                f"an evaluation worker process died (killed or out of memory) while evaluating "
                f"{', '.join(left)}; evaluate them again (every file is written atomically)"
            ) from None
        finally:
            for f in futures:
                f.cancel()
    return [results[d] for d in dirs]
