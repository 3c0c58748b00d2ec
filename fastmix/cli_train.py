"""``fastmix train``: one variant or all six, into run directories ``<out>/<variant>-s<seed>``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from converters.errors import DataError
from fastmix.config import VARIANTS, Config, load_config
from fastmix.errors import ConfigError, TrainingError


def add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--variant", default="base", choices=[*VARIANTS, "all"])
    p.add_argument("--config", action="append", default=[], metavar="PRESET",
                   help="extra preset from configs/ (e.g. smoke) or a TOML file; repeatable")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   dest="overrides", help="typed override; unknown keys are errors")
    p.add_argument("--epochs", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto | cpu | cuda[:N]")
    p.add_argument("--compile", choices=["auto", "on", "off"])
    p.add_argument("--data", help="betons folder (default: data.dir of the config)")
    p.add_argument("--out", default="runs", help="folder for run directories")
    p.add_argument("--resume", metavar="RUN", help="continue an interrupted run directory")
    p.add_argument("--no-progress", action="store_true")


def cli_overrides(args: argparse.Namespace) -> list[str]:
    """The shorthand flags as ``--set`` overrides (they go last, so they win)."""
    out = list(args.overrides)
    for flag, key in (("epochs", "train.epochs"), ("seed", "train.seed"),
                      ("device", "train.device"), ("compile", "train.compile")):
        value = getattr(args, flag, None)
        if value is not None:
            out.append(f"{key}={value!r}" if isinstance(value, str) else f"{key}={value}")
    if getattr(args, "data", None):
        out.append(f"data.dir={str(args.data)!r}")
    return out


def run_dir_for(out: str | Path, cfg: Config) -> Path:
    return Path(out) / f"{cfg['variant']['name']}-s{cfg['train']['seed']}"


def train_variants(variants: list[str], presets: list[str], overrides: list[str],
                   out: str | Path, progress: bool = True) -> list:
    """Train each variant in turn (sequential: on 2 cores one run already uses both)."""
    from fastmix.train import train

    cfgs = [load_config(v, presets, overrides) for v in variants]  # validate all first
    results = []
    for cfg in cfgs:
        results.append(train(cfg, run_dir_for(out, cfg), progress=progress))
    return results


def run_train(args: argparse.Namespace) -> int:
    from fastmix.train import train

    t0 = time.perf_counter()
    try:
        if args.resume:
            from fastmix.checkpoint import read_run_config

            cfg = read_run_config(args.resume)
            results = [train(cfg, Path(args.resume), resume=True, progress=not args.no_progress)]
        else:
            variants = list(VARIANTS) if args.variant == "all" else [args.variant]
            results = train_variants(variants, args.config, cli_overrides(args), args.out,
                                     progress=not args.no_progress)
    except (ConfigError, TrainingError, DataError) as e:
        print(f"fastmix train: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. the disk filled up while writing a checkpoint or a log
        print(f"fastmix train: error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return 2
    from fastmix import distributed

    if not distributed.is_main():
        return 0
    print(f"{'variant':10s} {'best val':>9s} {'img/s':>8s} {'train s':>8s}  run")
    for r in results:
        print(f"{r.variant:10s} {r.best_val_acc:9.4f} {r.images_per_s:8.0f} {r.seconds:8.1f}"
              f"  {r.run_dir}")
    print(f"wall time {time.perf_counter() - t0:.1f} s")
    return 0
