"""Sequential or concurrent: which trains several variants sooner on this machine?

Usage: .venv/bin/python bench/bench_concurrency.py [--data data] [--variants base,sp]
       [--epochs 1] [--repeats 1] [--json PATH]

* sequential: ``fastmix train --variant V`` for each variant in turn, each process using every
  core (torch intra-op threads and the Numba loader threads on all of them), which is what
  ``fastmix train --variant all`` does;
* concurrent: one ``fastmix train`` process per variant, all at once, process i pinned to core
  i mod cores (``os.sched_setaffinity``) with one loader thread (``data.num_workers=1``).

The two schedules alternate (S C S C ... S) so a drift of the machine's speed hits both; each
figure is the median of its runs. Reports the wall seconds of each schedule, their ratio, and
the validation accuracy each run reached (the schedules must train the same models).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _cmd(variant: str, data: str, epochs: int, out: Path, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "fastmix", "train", "--variant", variant, "--data", data,
            "--epochs", str(epochs), "--out", str(out), "--no-progress", *extra]  # fmt: skip


def _last_val_acc(out: Path, variant: str) -> float:
    rows = list(csv.DictReader((out / f"{variant}-s0" / "metrics.csv").open()))
    return float(rows[-1]["val_acc"])


def _run(cmds: list[list[str]], cores: list[set[int]] | None, log: Path) -> float:
    """Start every command at once (each pinned to its core set if given); wall seconds."""
    t0 = time.perf_counter()
    procs = []
    with log.open("ab") as f:
        for i, cmd in enumerate(cmds):
            pin = cores[i] if cores else None
            procs.append(subprocess.Popen(
                cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT,
                preexec_fn=(lambda c=pin: os.sched_setaffinity(0, c)) if pin else None,
            ))  # fmt: skip
        codes = [p.wait() for p in procs]
    if any(codes):
        raise RuntimeError(f"a training run failed (exit codes {codes}); see {log}")
    return time.perf_counter() - t0


def run_concurrency_bench(data: str, variants: list[str], epochs: int = 1, repeats: int = 1,
                          log=print) -> dict:  # fmt: skip
    from fastmix.runtime import usable_cores

    cpus = usable_cores()
    res: dict = {"variants": variants, "epochs": epochs, "cores": len(cpus),
                 "sequential_s": [], "concurrent_s": [], "val_acc": {}}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-conc-") as tmp:
        logf = Path(tmp) / "train.log"
        schedule = ["sequential", "concurrent"] * repeats + ["sequential"]
        for k, kind in enumerate(schedule):
            out = Path(tmp) / f"{kind}{k}"
            if kind == "sequential":
                wall = sum(_run([_cmd(v, data, epochs, out, [])], None, logf) for v in variants)
            else:
                extra = ["--set", "data.num_workers=1"]
                cmds = [_cmd(v, data, epochs, out, extra) for v in variants]
                cores = [{cpus[i % len(cpus)]} for i in range(len(variants))]
                wall = _run(cmds, cores, logf)
            res[f"{kind}_s"].append(wall)
            accs = {v: _last_val_acc(out, v) for v in variants}
            res["val_acc"].setdefault(kind, []).append(accs)
            accs_txt = ", ".join(f"{v} {a:.4f}" for v, a in accs.items())
            log(f"{kind:10s} {wall:7.1f} s  val acc {accs_txt}")
    res["sequential_median_s"] = statistics.median(res["sequential_s"])
    res["concurrent_median_s"] = statistics.median(res["concurrent_s"])
    res["sequential_over_concurrent"] = res["sequential_median_s"] / res["concurrent_median_s"]
    res["faster"] = "concurrent" if res["sequential_over_concurrent"] > 1 else "sequential"
    ratio = res["sequential_over_concurrent"]
    log(f"sequential {res['sequential_median_s']:.1f} s, concurrent "
        f"{res['concurrent_median_s']:.1f} s -> sequential / concurrent = {ratio:.2f} "
        f"({res['faster']} is faster)")  # fmt: skip
    return res


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data")
    ap.add_argument("--variants", default="base,sp")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    res = run_concurrency_bench(a.data, [v for v in a.variants.split(",") if v], a.epochs,
                                a.repeats)  # fmt: skip
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
    return res


if __name__ == "__main__":
    main()
