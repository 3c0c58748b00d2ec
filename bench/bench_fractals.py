"""Throughput of the IFS fractal generator (fastmix.converters.fractals.generate_fractals).

Usage: .venv/bin/python bench/bench_fractals.py [--n 2000] [--size 32] [--threads 1 2]
       [--repeat 3] [--json] [--preview PATH]

Reports images/s (best of --repeat timed runs, after one warm-up call that compiles the JIT
kernels) for every Numba thread count asked for that the machine allows, and checks that every
thread count produced the same pictures.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numba
import numpy as np
from fastmix.converters.fractals import (
    GENERATOR_VERSION,
    default_points,
    fractal_preview,
    generate_fractals,
)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="pictures per timed run")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--points", type=int, default=None, help="chaos-game points per picture")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    ap.add_argument("--preview", default=None, help="also write a PNG grid of 64 pictures here")
    args = ap.parse_args(argv)

    points = args.points if args.points is not None else default_points(args.size)
    t0 = time.perf_counter()
    generate_fractals(4, size=args.size, seed=args.seed, points=points)  # JIT warm-up
    warmup_s = time.perf_counter() - t0

    old = numba.get_num_threads()
    results = []
    reference = None
    identical = True
    try:
        for t in args.threads:
            if not 1 <= t <= numba.config.NUMBA_NUM_THREADS:
                results.append({"threads": t, "skipped": "more than NUMBA_NUM_THREADS"})
                continue
            numba.set_num_threads(t)
            times = []
            for _ in range(args.repeat):
                s = time.perf_counter()
                x = generate_fractals(args.n, size=args.size, seed=args.seed, points=points)
                times.append(time.perf_counter() - s)
            if reference is None:
                reference = x
            identical = identical and bool(np.array_equal(reference, x))
            best = min(times)
            results.append(
                {"threads": t, "seconds": round(best, 4), "images_per_s": round(args.n / best, 1)}
            )
    finally:
        numba.set_num_threads(old)

    report = {
        "bench": "fractals",
        "generator_version": GENERATOR_VERSION,
        "n": args.n,
        "size": args.size,
        "points": points,
        "repeat": args.repeat,
        "warmup_s": round(warmup_s, 2),
        "identical_across_threads": identical,
        "cpu": platform.processor() or platform.machine(),
        "results": results,
    }
    if args.preview and reference is not None:
        report["preview"] = str(fractal_preview(reference, args.preview, n=64))

    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"fractals {GENERATOR_VERSION}: n={args.n} size={args.size} points={points} "
            f"(warm-up/JIT {warmup_s:.1f} s, best of {args.repeat})"
        )
        for r in results:
            if "skipped" in r:
                print(f"  threads={r['threads']}: skipped ({r['skipped']})")
            else:
                print(
                    f"  threads={r['threads']}: {r['images_per_s']:9.1f} images/s "
                    f"({r['seconds']:.3f} s)"
                )
        print(f"  identical across thread counts: {identical}")
        if "preview" in report:
            print(f"  preview: {report['preview']}")
    return report


if __name__ == "__main__":
    main()
