"""``fastmix train``: one variant, all six, or several seeds, into run directories
``<out>/<variant>-s<seed>``, in one job (a worker process per core, one pass over the data per
worker; ``fastmix.train.trainer``).

Exit status: 0 when every run finished; 2 for a bad config, data or folder (nothing is
written); 143 / 130 after SIGTERM / SIGINT, once every unfinished run has written its
checkpoint (``--resume`` continues it).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from fastmix.config import VARIANTS, Config, load_config
from fastmix.errors import ConfigError, DataError, TrainingError


def add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--variant",
        default="base",
        help="a registered variant (the six: " + ", ".join(VARIANTS) + "; plugins add more), "
        "all (the six), or a recipe file path/to/my_method.toml",
    )
    p.add_argument(
        "--seeds", type=int, default=1, help="seeds per variant: 0..N-1 (or from --seed on)"
    )
    add_config_args(p)
    p.add_argument("--epochs", type=int)
    p.add_argument("--seed", type=int, help="the first training seed")
    p.add_argument("--device", help="auto | cpu | cuda[:N]")
    p.add_argument("--compile", choices=["auto", "on", "off"])
    p.add_argument("--data", help="betons folder (default: data.dir of the config)")
    p.add_argument("--out", default="runs", help="folder for run directories")
    p.add_argument(
        "--resume",
        metavar="RUN",
        action="append",
        default=[],
        help="continue an interrupted run directory (repeatable)",
    )
    p.add_argument("--no-progress", action="store_true")


def add_config_args(p: argparse.ArgumentParser) -> None:
    """``--config PRESET``, ``--set section.key=value`` and ``--plugin MODULE`` (each
    repeatable)."""
    add_preset_args(p)
    add_plugin_args(p)


def add_preset_args(p: argparse.ArgumentParser, what: str = "") -> None:
    """``--config PRESET`` and ``--set section.key=value`` (each repeatable); ``what`` prefixes
    their help."""
    p.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="PRESET",
        help=f"{what}extra preset (e.g. smoke, oe_paper) or a TOML file; repeatable",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        dest="overrides",
        help=f"{what}typed override; unknown keys are errors",
    )


def add_plugin_args(p: argparse.ArgumentParser) -> None:
    """``--plugin MODULE`` (repeatable): user code that registers models, augmentations,
    losses, detectors or variants; the entry-point group ``fastmix.plugins`` is loaded too."""
    p.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first (it registers models, augmentations, detectors, ...); repeatable",
    )


def cli_overrides(args: argparse.Namespace) -> list[str | dict[str, dict[str, Any]]]:
    """``--set`` texts, then the shorthand flags as dicts (they go last, so they win)."""
    out: list[str | dict[str, dict[str, Any]]] = list(args.overrides)
    for flag, key in (("epochs", "epochs"), ("device", "device"), ("compile", "compile")):
        value = getattr(args, flag, None)
        if value is not None:
            out.append({"train": {key: value}})
    if getattr(args, "data", None):
        out.append({"data": {"dir": str(args.data)}})
    return out


def study_configs(
    variants: list[str], seeds: list[int], presets: list[str], overrides: list
) -> list[Config]:
    """Every (seed, variant) config, validated before anything is trained."""
    return [
        load_config(v, presets, [*overrides, {"train": {"seed": s}}])
        for s in seeds
        for v in variants
    ]


def print_results(results: list) -> None:
    print(f"{'variant':10s} {'best val':>9s} {'img/s':>8s} {'train s':>8s}  run")
    for r in results:
        print(
            f"{r.variant:10s} {r.best_val_acc:9.4f} {r.images_per_s:8.0f} {r.seconds:8.1f}"
            f"  {r.run_dir}"
        )


def run_train(args: argparse.Namespace) -> int:
    from fastmix.registry import load_plugins
    from fastmix.train import distributed
    from fastmix.train.preemption import Preempted
    from fastmix.train.run_dir import run_dir_for
    from fastmix.train.trainer import RunRequest, train_runs

    t0 = time.perf_counter()
    try:
        load_plugins(args.plugin)
        if args.resume:
            requests = [RunRequest(None, Path(r), resume=True) for r in args.resume]
        else:
            variants = list(VARIANTS) if args.variant == "all" else [args.variant]
            first = args.seed if args.seed is not None else 0
            if args.seeds < 1:
                raise ConfigError(f"--seeds {args.seeds}: must be >= 1")
            cfgs = study_configs(
                variants, list(range(first, first + args.seeds)), args.config, cli_overrides(args)
            )
            requests = [RunRequest(c, run_dir_for(args.out, c)) for c in cfgs]
        results = train_runs(requests, progress=not args.no_progress)
    except Preempted as e:
        print(f"fastmix train: {e}", file=sys.stderr)
        return e.exit_code
    except (ConfigError, TrainingError, DataError) as e:
        print(f"fastmix train: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. the disk filled up while writing a checkpoint or a log
        print(f"fastmix train: error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return 2
    if not distributed.is_main():
        return 0
    print_results(results)
    print(f"wall time {time.perf_counter() - t0:.1f} s")
    return 0
