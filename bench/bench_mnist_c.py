"""Time fastmix.converters.mnist_c.corrupt on the MNIST test set: every corruption, all
10,000 digits.

Usage (from the repository root)::

    .venv/bin/python bench/bench_mnist_c.py [--raw DIR] [--repeats 3] [--json] [--preview PNG]

``--raw`` is the folder holding ``t10k-images-idx3-ubyte(.gz)`` (default
``../shared/data/mnist`` relative to the repository root). A warm-up call on a few digits per
corruption (Numba cache load or compile, line tables) is timed apart. Per corruption the median
over ``--repeats`` passes is reported; the total is the median of the per-pass totals.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
from fastmix.converters import mnist_c
from fastmix.converters.idx import read_idx_images

DEFAULT_RAW = Path(os.environ.get("FASTMIX_RAW", "../shared/data")) / "mnist"  # from the cwd


def find_images(raw: Path) -> Path:
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte"):
        if (raw / name).is_file():
            return raw / name
    raise SystemExit(f"{raw}: no t10k-images-idx3-ubyte(.gz); point --raw at the MNIST folder")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--raw", type=Path, default=DEFAULT_RAW, help="folder with the MNIST test IDX")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes (median reported)")
    ap.add_argument("--n", type=int, default=None, help="use only the first N digits")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ap.add_argument("--preview", type=Path, default=None, help="also write a preview PNG here")
    args = ap.parse_args(argv)

    images = read_idx_images(find_images(args.raw))[: args.n]
    t0 = time.perf_counter()
    for name in mnist_c.CORRUPTIONS:
        mnist_c.corrupt(images[:16], name, args.seed)
    warmup = time.perf_counter() - t0

    times: dict[str, list[float]] = {name: [] for name in mnist_c.CORRUPTIONS}
    totals = []
    for _ in range(max(1, args.repeats)):
        total = 0.0
        for name in mnist_c.CORRUPTIONS:
            t = time.perf_counter()
            out = mnist_c.corrupt(images, name, args.seed)
            dt = time.perf_counter() - t
            assert out.shape == images.shape and out.dtype == np.uint8
            times[name].append(dt)
            total += dt
        totals.append(total)

    result = {
        "n_images": int(len(images)),
        "repeats": len(totals),
        "generator_version": mnist_c.GENERATOR_VERSION,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "warmup_s": round(warmup, 3),
        "per_corruption_s": {k: round(statistics.median(v), 3) for k, v in times.items()},
        "total_s": round(statistics.median(totals), 3),
        "total_min_s": round(min(totals), 3),
        "images_per_s": round(len(images) * len(mnist_c.CORRUPTIONS) / statistics.median(totals)),
    }
    if args.preview is not None:
        result["preview"] = str(mnist_c.preview_png(images[:8], args.preview, seed=args.seed))

    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"MNIST-C regeneration, {result['n_images']} images, median of {result['repeats']} "
        f"pass(es), {result['cpu_count']} cores, generator {result['generator_version']}"
    )
    print(f"{'corruption':<15}{'seconds':>9}{'images/s':>11}")
    for name, sec in result["per_corruption_s"].items():
        rate = len(images) / sec if sec > 0 else float("inf")
        print(f"{name:<15}{sec:>9.3f}{rate:>11.0f}")
    print(f"{'total':<15}{result['total_s']:>9.3f}{result['images_per_s']:>11}")
    print(f"warm-up (16 images each, JIT cache/tables): {result['warmup_s']:.2f} s")
    if "preview" in result:
        print(f"preview: {result['preview']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
