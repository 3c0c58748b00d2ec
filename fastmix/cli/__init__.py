"""The ``fastmix`` command: the only place that wires the stages together.

fastmix convert   raw sources -> .beton files + manifest.json
fastmix train     train one variant, all six, or a recipe (--variant my_method.toml)
fastmix eval      evaluate trained runs (accuracy, MNIST-C, OOD, calibration), or any
                  model: --model MODULE:FACTORY --checkpoint FILE --data DIR --out DIR
fastmix report    tables and plots from evaluated runs
fastmix bench     throughput, side by side with the baselines
fastmix run       all of it

--plugin MODULE (or a .py file) loads user code that registers models, augmentations,
losses, detectors or variants; so do the entry points of the group fastmix.plugins.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from fastmix.cli.bench import add_bench_args, run_bench
from fastmix.cli.convert import add_convert_args, run_convert
from fastmix.cli.evaluate import add_eval_args, add_report_args, run_eval, run_report
from fastmix.cli.run import add_run_args, run_all
from fastmix.cli.train import add_train_args, run_train


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastmix", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    add_convert_args(sub.add_parser("convert", help="build betons from raw sources"))
    add_train_args(sub.add_parser("train", help="train one variant or all six"))
    add_eval_args(sub.add_parser("eval", help="evaluate trained runs"))
    add_report_args(sub.add_parser("report", help="report.md + plots from evaluated runs"))
    add_bench_args(sub.add_parser("bench", help="throughput vs the baselines"))
    add_run_args(sub.add_parser("run", help="convert + train all + eval + report"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {
        "convert": run_convert,
        "train": run_train,
        "eval": run_eval,
        "report": run_report,
        "bench": run_bench,
        "run": run_all,
    }
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        print(
            "fastmix: interrupted; finished files are kept, partial ones were discarded",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
