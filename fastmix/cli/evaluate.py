"""``fastmix eval`` and ``fastmix report`` (wired into ``fastmix/cli.py``).

    fastmix eval RUN... [--data DIR] [--which best|last] [--no-progress]
    fastmix eval --model MODULE:FACTORY --checkpoint FILE --data DIR --out DIR
    fastmix report RUN... --out DIR [--data DIR] [--which best|last] [--no-progress]

``eval`` writes ``<run>/results.json``, ``<run>/logits.npz`` and ``<run>/features.npz``
(``eval.features``) and prints one line per run;
``report`` evaluates the runs that lack ``results.json`` first, then writes
``<out>/report.md`` and ``<out>/plots/``.  ``eval --model`` evaluates a model fastmix did not
train: ``FACTORY()`` builds it, the checkpoint is a plain ``state_dict``, and ``--out`` gets the
same files (``fastmix.evaluate_model``): a folder ``report`` takes beside fastmix's runs.  User
errors (a missing run, missing data, a bad config) print one clear message to stderr and return
a non-zero exit code.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from fastmix.errors import ConfigError, DataError, TrainingError

EXIT_USER_ERROR = 2


def _common(p: argparse.ArgumentParser, runs: str = "+") -> None:
    from fastmix.cli.train import add_plugin_args

    p.add_argument("runs", nargs=runs, metavar="RUN", help="run directories (from fastmix train)")
    add_plugin_args(p)
    p.add_argument(
        "--data", metavar="DIR", default=None, help="beton folder (default: each run's data.dir)"
    )
    p.add_argument(
        "--which",
        choices=("best", "last"),
        default="best",
        help="checkpoint to evaluate (default best)",
    )
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="inference precision (auto = fp32; bf16 rounds logits and moves AUROCs)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the OE-protocol OOD draws")
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars (one per run and set during inference)",
    )


def add_eval_args(p: argparse.ArgumentParser) -> None:
    """Arguments of ``fastmix eval``."""
    from fastmix.cli.train import add_preset_args

    _common(p, runs="*")
    p.add_argument(
        "--model", metavar="MODULE:FACTORY", help="evaluate FACTORY() of MODULE (not a run)"
    )
    p.add_argument("--checkpoint", metavar="FILE", help="--model's weights: a plain state_dict")
    p.add_argument("--out", metavar="DIR", help="--model's results folder (named after it)")
    add_preset_args(p, "--model's evaluation settings: ")


def add_report_args(p: argparse.ArgumentParser) -> None:
    """Arguments of ``fastmix report``."""
    _common(p)
    p.add_argument("--out", metavar="DIR", required=True, help="folder for report.md + plots")
    p.add_argument(
        "--reeval",
        action="store_true",
        help="evaluate every run again, even those with results.json",
    )


def _check_runs(runs: list[str]) -> list[Path]:
    paths = [Path(r) for r in runs]
    for p in paths:
        if not p.is_dir():
            raise DataError(f"{p}: run directory not found")
        if not (p / "config.toml").is_file():
            raise DataError(f"{p}: not a fastmix run directory (no config.toml)")
    return paths


def _pct(x: Any) -> str:
    return "    –" if x is None else f"{100 * x:6.2f}"


def _evaluate(paths: list[Path], args: argparse.Namespace) -> list[dict[str, Any]]:
    from fastmix.evaluate.many import evaluate_runs

    return evaluate_runs(
        paths,
        args.data,
        args.seed,
        which=args.which,
        device=args.device,
        precision=args.precision,
        progress=not args.no_progress,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )


def print_table(results: list[dict[str, Any]]) -> None:
    """variant, clean acc, MNIST-C mean, mean held-out OOD AUROC (MSP), ECE before/after."""
    print(
        f"{'run':24s} {'variant':10s} {'clean%':>7s} {'MNIST-C%':>8s} {'OOD AUROC%':>10s} "
        f"{'ECE%':>6s} {'ECE@T%':>6s} {'T':>6s}"
    )
    for r in results:
        s = r["summary"]
        print(
            f"{r['run'][:24]:24s} {r['variant'][:10]:10s} {_pct(s['test_accuracy']):>7s} "
            f"{_pct(s['mnist_c_mean']):>8s} {_pct(s['ood_auroc_held_out_mean']):>10s} "
            f"{_pct(s['ece_before']):>6s} {_pct(s['ece_after']):>6s} {s['temperature']:6.3f}"
        )
    if results:
        print(
            f"OOD AUROC: mean over held-out OOD sets, score {results[0]['summary']['score']}, "
            "OOD positive; ECE@T: after temperature scaling (T fitted on validation)"
        )


def _evaluate_external(args: argparse.Namespace) -> list[dict[str, Any]]:
    """``--model MODULE:FACTORY --checkpoint FILE --data DIR --out DIR``."""
    import torch

    from fastmix.evaluate.external import evaluate_model, load_factory

    if args.runs:
        raise ConfigError("fastmix eval: give run directories or --model, not both")
    missing = [f"--{k}" for k in ("checkpoint", "data", "out") if not getattr(args, k)]
    if missing:
        raise ConfigError(f"--model needs {', '.join(missing)}")
    from fastmix.config import load_config

    cfg = load_config(None, args.config, args.overrides)  # every fault before anything runs
    model = load_factory(args.model)
    try:
        state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except FileNotFoundError:
        raise DataError(f"{args.checkpoint}: checkpoint not found") from None
    except Exception as e:  # a foreign or damaged file, or weights of another model
        msg = f"{args.checkpoint}: not a state_dict of {args.model} ({type(e).__name__}: {e})"
        raise DataError(msg.splitlines()[0][:400]) from None
    print(f"evaluating {args.model} -> {args.out} ...", file=sys.stderr, flush=True)
    return [
        evaluate_model(
            model,
            args.data,
            out=args.out,
            config=cfg,
            seed=args.seed,
            device=args.device,
            precision=args.precision,
            progress=not args.no_progress,
        )
    ]


def run_eval(args: argparse.Namespace) -> int:
    """``fastmix eval``: 0 on success, 2 on a user error (message on stderr)."""
    from fastmix.registry import load_plugins

    try:
        load_plugins(args.plugin)
        if args.model:
            results = _evaluate_external(args)
        else:
            if not args.runs:
                raise ConfigError("fastmix eval: give run directories, or --model")
            if getattr(args, "overrides", None) or getattr(args, "config", None):
                raise ConfigError(
                    "fastmix eval: --config / --set go with --model; a run directory is "
                    "evaluated with the config it was trained with (its config.toml)"
                )
            results = _evaluate(_check_runs(args.runs), args)
    except (DataError, ConfigError, TrainingError) as e:
        print(f"fastmix eval: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    print_table(results)
    return 0


def run_report(args: argparse.Namespace) -> int:
    """``fastmix report``: evaluates runs lacking results.json, then writes report.md."""
    from fastmix.registry import load_plugins
    from fastmix.report.report import write_report

    try:
        load_plugins(args.plugin)
        paths = _check_runs(args.runs)
        todo = [p for p in paths if args.reeval or not (p / "results.json").is_file()]
        if todo:
            print_table(_evaluate(todo, args))
        path = write_report(paths, args.out)
    except (DataError, ConfigError, TrainingError) as e:
        print(f"fastmix report: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    print(f"report: {path}")
    return 0
