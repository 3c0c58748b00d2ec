"""``fastmix eval`` and ``fastmix report`` (wired into ``fastmix/cli.py``).

    fastmix eval RUN... [--data DIR] [--which best|last] [--no-progress]
    fastmix report RUN... --out DIR [--data DIR] [--which best|last] [--no-progress]

``eval`` writes ``<run>/results.json``, ``<run>/logits.npz`` and ``<run>/features.npz``
(``eval.features``) and prints one line per run;
``report`` evaluates the runs that lack ``results.json`` first, then writes
``<out>/report.md`` and ``<out>/plots/``.  User errors (a missing run, missing data, a bad
config) print one clear message to stderr and return a non-zero exit code.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from fastmix.errors import ConfigError, DataError, TrainingError

EXIT_USER_ERROR = 2


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories (from fastmix train)")
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
    _common(p)


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


def run_eval(args: argparse.Namespace) -> int:
    """``fastmix eval``: 0 on success, 2 on a user error (message on stderr)."""
    try:
        paths = _check_runs(args.runs)
        results = _evaluate(paths, args)
    except (DataError, ConfigError, TrainingError) as e:
        print(f"fastmix eval: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    print_table(results)
    return 0


def run_report(args: argparse.Namespace) -> int:
    """``fastmix report``: evaluates runs lacking results.json, then writes report.md."""
    from fastmix.report.report import write_report

    try:
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
