"""``fastmix run``: convert + train all six + evaluate + report, in one command.

This is what ``make run`` runs. Every stage skips finished work: convert rebuilds only missing
or stale betons; training skips run directories whose ``done.json`` says they finished this
config, resumes unfinished ones (from their last checkpoint, e.g. after SIGTERM) and trains
the rest, all in one job (a worker process per core, one pass over the data per worker);
evaluation skips runs that already have results.json (training removes it whenever it
changes the weights), so a second ``make run`` takes seconds. SIGTERM / SIGINT during
training exits 143 / 130 after checkpointing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from fastmix.cli.convert import split_names
from fastmix.cli.train import add_config_args, study_configs
from fastmix.config import VARIANTS
from fastmix.errors import ConfigError, DataError, TrainingError


def add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--raw", action="append", default=[], metavar="DIR")
    p.add_argument("--mirror", metavar="URL")
    p.add_argument("--offline", action="store_true")
    p.add_argument("--data", default="data", help="betons folder")
    p.add_argument("--out", default="runs", help="run directories and the report")
    p.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help="comma-separated registered variants or recipe .toml files (default: the six)",
    )
    p.add_argument("--seeds", type=int, default=1, help="seeds per variant (mean ± std)")
    add_config_args(p)
    p.add_argument("--fractals", type=int, default=10_000)
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAMES",
        help="convert only these betons (comma-separated names or prefixes); the study "
        "evaluates the sets it finds",
    )
    p.add_argument("--no-progress", action="store_true")


def run_all(args: argparse.Namespace) -> int:
    from fastmix.converters.build import convert, summary_lines
    from fastmix.converters.catalog import CatalogOptions, build_catalog
    from fastmix.converters.sources import SourceResolver
    from fastmix.evaluate.many import evaluate_runs
    from fastmix.registry import load_plugins
    from fastmix.report.report import write_report
    from fastmix.train.preemption import Preempted
    from fastmix.train.run_dir import is_finished, run_dir_for
    from fastmix.train.trainer import RunRequest, train_runs

    t0 = time.perf_counter()
    progress = not args.no_progress
    out = Path(args.out)
    try:
        load_plugins(args.plugin)
        variants = [v for v in args.variants.split(",") if v]
        if args.seeds < 1:
            raise ConfigError(f"--seeds {args.seeds}: must be >= 1")
        overrides = [*args.overrides, {"data": {"dir": str(args.data)}}]
        cfgs = study_configs(variants, list(range(args.seeds)), args.config, overrides)

        print("== convert", flush=True)
        corrupt = tuple(
            sorted(
                {
                    c["data"]["corrupted"].replace("_c", "_test")
                    for c in cfgs
                    if c["data"]["corrupted"] != "mnist_c"
                }
            )
        )
        catalog = build_catalog(CatalogOptions(fractal_count=args.fractals, corrupt=corrupt))
        resolver = SourceResolver(
            raw_dirs=args.raw, mirror=args.mirror, allow_download=not args.offline
        )
        only = split_names(args.only) or None
        result = convert(catalog, args.data, resolver, only=only, progress=progress)
        for line in summary_lines(result, catalog):
            print(line)
        if result.exit_code(catalog) != 0:
            return 1

        print("== train", flush=True)
        runs, todo = [], []
        for cfg in cfgs:
            run_dir = run_dir_for(out, cfg)
            runs.append(run_dir)
            if is_finished(run_dir, cfg):
                print(f"{run_dir}: already trained")
                continue
            resume = (run_dir / "config.toml").is_file()  # same config (is_finished checked)
            todo.append(RunRequest(None if resume else cfg, run_dir, resume))
        train_runs(todo, progress=progress)

        print("== evaluate", flush=True)
        todo_eval = []
        for run_dir in runs:
            if (run_dir / "results.json").is_file():
                print(f"{run_dir}: already evaluated")
            else:
                todo_eval.append(run_dir)
        evaluate_runs(todo_eval, data_dir=args.data, progress=progress)

        print("== report", flush=True)
        report = write_report(runs, out / "report")
        print(f"report: {report}")
    except Preempted as e:
        print(f"fastmix run: {e}", file=sys.stderr)
        return e.exit_code
    except (ConfigError, TrainingError, DataError) as e:
        print(f"fastmix run: error: {e}", file=sys.stderr)
        return 2
    print(f"fastmix run finished in {time.perf_counter() - t0:.0f} s")
    return 0
