"""The public Python API, exported from ``fastmix``: train, evaluate and report, each in the
shape ``fastmix.<stage>(what, data, *, out=..., ...)``, as the CLI does them.

    fastmix.train("sp_oe", "data", out="runs", seeds=3)      # -> [runs/sp_oe-s0, ...]
    fastmix.evaluate_model(my_net, "data", out="runs/my_net")  # any nn.Module -> logits
    fastmix.report(["runs/sp_oe-s0", "runs/my_net"], out="runs/report")
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from fastmix.evaluate.external import evaluate_model

__all__ = ["evaluate_model", "report", "train"]


def train(
    variant: str | Sequence[str],
    data: str | os.PathLike,
    *,
    out: str | os.PathLike = "runs",
    seeds: int | Sequence[int] = 1,
    config: Sequence[str] = (),
    overrides: Sequence[str | dict] = (),
    plugins: Sequence[str] = (),
    progress: bool = False,
) -> list[Path]:
    """Train ``variant`` (a registered name, a recipe ``.toml`` path, or several) on the betons
    in ``data`` for ``seeds`` (a count from 0, or the seeds) into ``<out>/<name>-s<seed>``, as
    ``fastmix train`` does; ``config``: extra presets; ``overrides``: ``section.key=value``
    texts or dicts; ``plugins``: modules to import first. Returns the run directories."""
    from fastmix.cli.train import study_configs
    from fastmix.registry import load_plugins
    from fastmix.train.run_dir import run_dir_for
    from fastmix.train.trainer import RunRequest, train_runs

    load_plugins(plugins)
    variants = [variant] if isinstance(variant, str) else list(variant)
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    cfgs = study_configs(
        variants, seed_list, list(config), [*overrides, {"data": {"dir": str(data)}}]
    )
    runs = [run_dir_for(out, c) for c in cfgs]
    train_runs([RunRequest(c, r) for c, r in zip(cfgs, runs, strict=True)], progress=progress)
    return runs


def report(
    runs: Sequence[str | os.PathLike],
    *,
    out: str | os.PathLike,
    data: str | os.PathLike | None = None,
    progress: bool = False,
) -> Path:
    """``<out>/report.md`` and plots for ``runs`` (fastmix run directories, or folders written
    by :func:`evaluate_model`), evaluating the fastmix runs that lack results.json first, as
    ``fastmix report`` does. Returns the report's path."""
    from fastmix.evaluate.evaluate import evaluate_run
    from fastmix.report.report import write_report

    paths = [Path(r) for r in runs]
    cache: dict = {}
    for p in paths:
        if not (p / "results.json").is_file():
            evaluate_run(p, data, cache, progress=progress)
    return write_report(paths, out)
