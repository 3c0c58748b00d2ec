"""``fastmix bench``: throughput side by side with the baselines users would otherwise run.

    fastmix bench loader   FFCV + Numba pipelines vs a torch DataLoader with per-sample PIL ops
    fastmix bench train    training images/s per model preset (one run, six side by side),
                           the LeNets' max-pool kernel vs F.max_pool2d, eager vs compiled
    fastmix bench e2e      all six variants the fastmix way vs the OE repository's way
    fastmix bench all      all three

Every figure is measured in this process, side by side with its baseline; ``--json PATH``
writes a machine-readable record including the machine (CPU, cores, GPU, library versions).
The benchmark code is the ``fastmix.bench`` subpackage (the repository's ``bench/`` folder).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime

from fastmix.bench.bench_train import MODEL_PRESETS
from fastmix.config import VARIANTS
from fastmix.files import atomic_write


def machine_info() -> dict:
    """CPU model, cores, GPU and library versions, for every benchmark record."""
    from importlib.metadata import version

    import numba
    import numpy
    import torch

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    from fastmix.runtime import cpu_bf16_flags

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "bf16_flags": list(cpu_bf16_flags()),
        "gpu": gpu,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "ffcv": version("ffcv"),
        "numba": numba.__version__,
        "numpy": numpy.__version__,
        "loadavg": os.getloadavg(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def add_bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("which", choices=["loader", "train", "e2e", "all"])
    p.add_argument("--data", default="data", help="betons folder (train / e2e)")
    p.add_argument("--raw", action="append", default=[], help="raw data folder (loader)")
    p.add_argument(
        "--models", default=",".join(MODEL_PRESETS), help="model presets of the train benchmark"
    )
    p.add_argument("--rounds", type=int, default=3, help="timed rounds (train)")
    p.add_argument("--e2e-variants", default=",".join(VARIANTS), help="end-to-end variants")
    p.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="PRESET",
        help="presets for fastmix's side of e2e (default settings otherwise)",
    )
    p.add_argument(
        "--reference-steps",
        type=int,
        default=0,
        help="stop each reference run after N steps (smoke runs only)",
    )
    p.add_argument("--steps", type=int, default=20, help="timed steps per round (train)")
    p.add_argument("--loader-n", type=int, default=55_000, help="images per loader epoch")
    p.add_argument("--loader-epochs", type=int, default=7, help="timed loader rounds (median)")
    p.add_argument("--baseline-n", type=int, default=8192, help="images per baseline epoch")
    p.add_argument("--no-latency", action="store_true", help="skip the cold/warm JIT timing")
    p.add_argument("--plot", help="PNG of the loader's images/s per pipeline")
    p.add_argument("--no-compile", action="store_true", help="skip eager-vs-compiled")
    p.add_argument("--preview", help="PNG grid of augmented samples (loader)")
    p.add_argument("--json", help="write the record here")


def run_bench(args: argparse.Namespace) -> int:
    record: dict = {"machine": machine_info(), "command": " ".join(sys.argv)}
    t0 = time.perf_counter()
    which = ["loader", "train", "e2e"] if args.which == "all" else [args.which]
    if "loader" in which:
        from fastmix.bench.bench_loader import run_loader_bench

        raw = args.raw[0] if args.raw else None
        print("== loader")
        record["loader"] = run_loader_bench(
            n=args.loader_n, epochs=args.loader_epochs,
            baseline_n=min(args.baseline_n, args.loader_n), raw_dir=raw,
            latency=not args.no_latency, preview=args.preview,
        )  # fmt: skip
        if args.plot:
            from fastmix.bench.plot_bench import plot_loader

            m = record["machine"]
            title = f"Loader throughput, {m['cpu']}, {m['cores']} cores ({m['date'][:10]})"
            print(f"plot: {plot_loader(record['loader'], args.plot, title)}")
    if "train" in which:
        from fastmix.bench.bench_train import bench_compile, compile_latency, run_train_bench

        print("== train")
        models = tuple(m for m in args.models.split(",") if m)
        record["train"] = run_train_bench(models, steps=args.steps, rounds=args.rounds)
        from fastmix.bench.bench_pool import bench_pool

        record["train"]["pool"] = bench_pool(steps=args.steps, rounds=max(2, args.rounds))
        if not args.no_compile:
            c = record["train"]["compile"] = bench_compile()
            c["latency"] = compile_latency()
            print(
                f"step eager {c['eager']['train_ms']:.1f} ms, compiled "
                f"{c['compiled']['train_ms']:.1f} ms ({c['train_speedup']:.2f}x; first "
                f"compiled step {c['compiled']['first_step_s']:.1f} s); inference eager "
                f"{c['eager']['infer_ms']:.1f} ms, compiled {c['compiled']['infer_ms']:.1f} ms "
                f"({c['infer_speedup']:.2f}x); first compiled step in a new process "
                f"{c['latency']['cold_first_step_s']:.1f} s with an empty cache, "
                f"{c['latency']['warm_first_step_s']:.1f} s with it filled"
            )
    if "e2e" in which:
        from fastmix.bench.bench_train import run_e2e_bench

        print("== e2e")
        variants = tuple(v for v in args.e2e_variants.split(",") if v)
        record["e2e"] = run_e2e_bench(args.data, variants, tuple(args.config), args.reference_steps)
    record["seconds"] = time.perf_counter() - t0
    print(
        f"bench finished in {record['seconds']:.0f} s on {record['machine']['cpu']} "
        f"({record['machine']['cores']} cores)"
    )
    if args.json:
        atomic_write(args.json, json.dumps(record, indent=1, default=str))
    return 0
