"""Loader throughput: fastmix's FFCV + Numba pipelines against per-sample PyTorch baselines.

Usage: .venv/bin/python bench/bench_loader.py [--n 55000] [--batch-size 512] [--epochs 7]
       [--baseline-n 8192] [--threads 1 2] [--raw DIR] [--no-latency] [--json [PATH]]
       [--preview PATH]

For the pipelines none / sp / pixmix it prints images/second of
* fastmix: ``fastmix.data.loader.make_train_loader`` over a beton of ``--n`` MNIST training images
  (../shared/data/mnist beside the checkout, or ``--raw``; random digit-like images otherwise),
  at every Numba thread count of ``--threads``;
* the baseline: ``bench/baseline_loader.py``, andyzoujm/pixmix's way (per-sample Pillow ops and
  NumPy mixing in a ``Dataset``, a torch ``DataLoader`` with 2 worker processes), over the first
  ``--baseline-n`` images (its speed per image does not depend on the dataset size).
Per pipeline, the baseline and fastmix at each thread count run round by round: every round is
one epoch of each, in turn, so a drift of the machine's speed hits all of them alike. Each rate is
the median over ``--epochs`` rounds after one warm-up epoch, and each ratio (fastmix / baseline,
2 vs 1 thread) the median of the ratios within a round, with their range; the consumer only
counts the batches. Each round also times ``MachineProbe``: two perfectly parallel loops (one
vectorised, one latency-bound) on 1 and 2 threads, i.e. what the machine itself gives a second
thread at that moment. It also measures the time to the first PixMix batch in a fresh process
with an empty Numba cache (cold: JIT compilation) and again with that cache filled (warm), and
records the load average, because other processes on a shared machine slow every figure down.

``run_loader_bench(...)`` returns the same results as a dict (for ``fastmix bench loader``).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

VARIANTS = ("none", "sp", "pixmix")
DEFAULT_RAW = Path(os.environ.get("FASTMIX_RAW", "../shared/data"))  # relative to the cwd


# ----------------------------------------------------------------------------- data


def load_images(n: int, raw_dir: Path | None, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """The first ``n`` MNIST training images and labels (read by ``fastmix.converters.idx``), or
    random digit-like images."""
    from fastmix.converters.idx import read_idx_images, read_idx_labels

    root = Path(raw_dir) if raw_dir is not None else DEFAULT_RAW
    img_path = root / "mnist" / "train-images-idx3-ubyte.gz"
    lab_path = root / "mnist" / "train-labels-idx1-ubyte.gz"
    if img_path.is_file() and lab_path.is_file():
        images, labels = read_idx_images(img_path), read_idx_labels(lab_path)
        if len(images) >= n:
            return images[:n].copy(), labels[:n].copy(), f"MNIST ({img_path})"
    g = np.random.default_rng(seed)
    images = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):
        y, x = g.integers(3, 10, 2)
        blob = g.integers(0, 256, (16, 10)) * (g.random((16, 10)) < 0.6)
        images[i, y : y + 16, x : x + 10] = blob
    return images, g.integers(0, 10, n), "random digit-like images (MNIST not found)"


def make_bank(m: int = 1000, size: int = 32, seed: int = 0) -> tuple[np.ndarray, str]:
    """Mixing pictures: fastmix.converters.fractals when available, else smooth random patterns."""
    try:
        from fastmix.converters.fractals import generate_fractals

        bank = generate_fractals(m, size=size, seed=seed)
        return bank, "fastmix.converters.fractals.generate_fractals"
    except Exception:  # the fractal generator is another module's; any pictures will do here
        g = np.random.default_rng(seed)
        yy, xx = np.mgrid[0:size, 0:size] / size
        bank = np.empty((m, size, size), np.uint8)
        for i in range(m):
            f = g.uniform(1, 12, (3, 2))
            phase = g.uniform(0, 6, 3)
            v = sum(np.sin(2 * np.pi * (f[j, 0] * xx + f[j, 1] * yy) + phase[j]) for j in range(3))
            bank[i] = np.clip(127.5 + 42.5 * v, 0, 255).astype(np.uint8)
        return bank, "random sinusoid patterns (fastmix.converters.fractals unavailable)"


# ----------------------------------------------------------------------------- timing


def cpu_seconds() -> float:
    """CPU seconds (user + system) of this process, all threads (clock_gettime, fine-grained),
    plus its live child processes -- the baseline's DataLoader workers -- via psutil (10 ms
    ticks) when psutil is installed."""
    total = time.process_time()
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil ships beside torch here
        return total
    for p in psutil.Process().children(recursive=True):
        try:
            c = p.cpu_times()
            total += c.user + c.system
        except psutil.Error:
            pass
    return total


def time_epoch(loader: Iterable) -> tuple[float, float]:
    """One epoch of ``loader``: (images per wall-clock second, images per CPU-second). The
    consumer only counts the batches. The second figure is robust to other load on a shared
    machine; the first is what a training run sees."""
    c0 = cpu_seconds()
    t0 = time.perf_counter()
    n = 0
    for batch in loader:
        n += len(batch[1])
    dt = time.perf_counter() - t0
    dc = cpu_seconds() - c0
    return n / dt, (n / dc if dc > 0 else float("nan"))


def interleaved_epochs(loaders: dict[str, Iterable], epochs: int, warmup: int = 1) -> dict:
    """Time every loader in ``loaders`` for ``epochs`` rounds after ``warmup`` untimed epochs.

    Each round runs one epoch of every loader, one after the other, so a slow drift of the
    machine's speed (other tenants of a virtual machine) hits all of them alike, and a ratio
    taken within one round compares like with like. Odd rounds run the loaders in reverse order
    (A B C, C B A, ...), so no loader always follows the same one (the baseline's worker
    processes, say) and a drift within a round cancels over two.
    Returns {name: {img_per_s (median), img_per_cpu_s (median), epochs (per-round rates)}}.
    """
    for loader in loaders.values():
        for _ in range(warmup):
            time_epoch(loader)
    rates: dict[str, list[tuple[float, float]]] = {name: [] for name in loaders}
    names = list(loaders)
    for r in range(epochs):
        for name in names if r % 2 == 0 else reversed(names):
            rates[name].append(time_epoch(loaders[name]))
    return {
        name: {
            "img_per_s": statistics.median(r for r, _ in rs),
            "img_per_cpu_s": statistics.median(c for _, c in rs),
            "epochs": [round(r, 1) for r, _ in rs],
        }
        for name, rs in rates.items()
    }


class MachineProbe:
    """What the machine itself gives 2 threads over 1, timed in the same rounds as the loaders.

    A perfectly parallel Numba loop with no memory traffic, no shared data and no serial part:
    ``TASKS`` equal tasks on ``threads`` threads, each on a float32 row of its own that stays
    in L1. Two kinds, which a machine with two real cores runs both ~2x faster on 2 threads:
    * ``"vector"``: ``x[j] = 0.999 x[j] + 0.0005`` over the row, vectorised: bound by the
      core's execution ports, so it scales only as far as the 2 threads do not share a core;
    * ``"chain"``: the same update on one scalar, each step waiting on the last: bound by
      latency, so two threads scale ~2x even when they share one core (hyper-threads).
    A loader's scaling is read against these: PixMix's kernel mixes both kinds of work.
    Iterating the probe is one "epoch" of ``calls`` kernel calls (~10 ms each on one thread);
    each yields ``(None, array of TASKS)`` so that ``time_epoch`` counts tasks as images.
    """

    TASKS = 8
    ROW = 256  # float32: 1 KiB per task
    KINDS = ("vector", "chain")

    def __init__(self, threads: int, kind: str = "vector", calls: int = 16) -> None:
        self.threads, self.calls = threads, calls
        self.kernel = _probe_kernels()[kind]
        self.rows = np.zeros((self.TASKS, self.ROW), np.float32)
        self.reps = _probe_reps(kind)  # the same work per call for every thread count

    def __iter__(self):
        done = np.empty(self.TASKS)
        with _numba_threads(self.threads):
            for _ in range(self.calls):
                self.kernel(self.rows, self.reps)
                yield None, done


PROBE_KINDS = MachineProbe.KINDS


@contextlib.contextmanager
def _numba_threads(n: int):
    import numba

    previous = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


@functools.cache
def _probe_reps(kind: str) -> int:
    """Repetitions for ~10 ms per ``MachineProbe`` call on one thread (timed over >= 20 ms)."""
    kernel, rows = _probe_kernels()[kind], np.zeros((MachineProbe.TASKS, MachineProbe.ROW),
                                                   np.float32)  # fmt: skip
    reps = 1
    with _numba_threads(1):
        kernel(rows, 1)  # compile
        while True:
            t0 = time.perf_counter()
            kernel(rows, reps)
            dt = time.perf_counter() - t0
            if dt >= 0.02:
                return max(1, int(reps * 0.01 / dt))
            reps *= 4


@functools.cache
def _probe_kernels() -> dict[str, Callable]:
    """The two compiled loops of ``MachineProbe`` (compiled on first use: bench-only code)."""
    import numba

    @numba.njit(parallel=True, nogil=True, fastmath=True)
    def vector(rows, reps):
        for t in numba.prange(rows.shape[0]):
            x = rows[t]
            for _ in range(reps):
                for j in range(x.shape[0]):
                    x[j] = x[j] * np.float32(0.999) + np.float32(0.0005)

    @numba.njit(parallel=True, nogil=True, fastmath=True)
    def chain(rows, reps):
        for t in numba.prange(rows.shape[0]):
            v = rows[t, 0]
            for _ in range(reps * rows.shape[1] // 16):  # ~as long per rep as ``vector``
                v = v * np.float32(0.999) + np.float32(0.0005)
            rows[t, 0] = v

    return {"vector": vector, "chain": chain}


def round_ratios(num: dict, den: dict) -> dict:
    """Median and range of the per-round ratios num/den of two ``interleaved_epochs`` entries."""
    ratios = [a / b for a, b in zip(num["epochs"], den["epochs"], strict=True)]
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}


_LATENCY_CHILD = textwrap.dedent(
    """
    import json, sys, time
    t0 = time.perf_counter()
    import numpy as np
    from fastmix.augment.spec import Augmentation
    from fastmix.data.loader import make_train_loader
    t1 = time.perf_counter()
    bank = np.load(sys.argv[2])
    loader = make_train_loader(sys.argv[1], Augmentation("pixmix"), int(sys.argv[3]), seed=0,
                               fractal_bank=bank, num_workers=int(sys.argv[4]))
    t2 = time.perf_counter()
    next(iter(loader))
    t3 = time.perf_counter()
    print(json.dumps({"import_s": t1 - t0, "loader_s": t2 - t1, "first_batch_s": t3 - t2,
                      "total_s": t3 - t0}))
    """
)


def first_batch_latency(beton: Path, bank_npy: Path, batch_size: int, threads: int) -> dict:
    """Time to the first PixMix batch in a fresh process: cold (empty Numba cache) and warm."""
    out = {}
    with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for name in ("cold", "warm"):
            res = subprocess.run(
                [sys.executable, "-c", _LATENCY_CHILD, str(beton), str(bank_npy),
                 str(batch_size), str(threads)],
                env=env, capture_output=True, text=True, timeout=600, check=True,
            )  # fmt: skip
            times = json.loads(res.stdout.strip().splitlines()[-1])
            out[name] = {k: round(v, 3) for k, v in times.items()}
    return out


# ----------------------------------------------------------------------------- preview


def write_preview(path: Path, images: np.ndarray, bank: np.ndarray, n: int = 12) -> None:
    """PNG grid: originals, salt-and-pepper, PixMix at epochs 0 and 1, PixMix with all ops."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fastmix.augment import pillow_ops, pixmix, salt_pepper

    x = np.ascontiguousarray(images[:n])
    idx = np.arange(n, dtype=np.int64)
    rows = {"original": x.astype(np.float32) / 255}
    out = np.empty(x.shape, np.float32)
    salt_pepper.salt_pepper_batch(x, idx, out, 0, 0, salt_pepper.SP_AMOUNT)
    rows[f"S&P {salt_pepper.SP_AMOUNT:g}"] = out.copy()
    for epoch in (0, 1):
        pixmix.pixmix_batch(x, idx, bank, out, 0, epoch, 4, 3.0, 3.0, pillow_ops.N_OPS_BASIC)
        rows[f"PixMix ep {epoch}"] = out.copy()
    pixmix.pixmix_batch(x, idx, bank, out, 0, 2, 4, 3.0, 3.0, pillow_ops.N_OPS_ALL)
    rows["PixMix all-ops"] = out.copy()
    rows["bank crops"] = bank[:n, 2:30, 2:30].astype(np.float32) / 255
    fig, axes = plt.subplots(len(rows), n, figsize=(n * 0.9, len(rows) * 1.0))
    for r, (name, imgs) in enumerate(rows.items()):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(imgs[c], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=7)
    fig.tight_layout(pad=0.2)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------- driver


def run_loader_bench(
    n: int = 55_000,
    batch_size: int = 512,
    epochs: int = 7,
    threads: Sequence[int] = (1, 2),
    variants: Sequence[str] = VARIANTS,
    baseline_n: int = 8192,
    baseline_workers: int = 2,
    bank_size: int = 1000,
    raw_dir: str | os.PathLike | None = None,
    workdir: str | os.PathLike | None = None,
    latency: bool = True,
    preview: str | os.PathLike | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Run the loader benchmark; return {config, data, baseline, ffcv, speedup_vs_baseline,
    speedup_spread, cpu_efficiency_vs_baseline, thread_scaling, first_batch, loadavg, preview}.

    ``ffcv[variant][threads]`` and ``baseline[variant]`` hold ``img_per_s`` (median wall-clock
    images/second over the timed rounds), ``img_per_cpu_s`` (images per CPU-second of this
    process and its workers) and the per-round wall-clock rates; ``speedup_vs_baseline[v]`` is
    the median over rounds of (fastest thread count) / baseline, ``thread_scaling[v]`` the
    median, min and max over rounds of 2 threads / 1 thread."""
    from fastmix.converters.beton import write_beton

    from fastmix.runtime import usable_cores

    cpus = len(usable_cores())
    threads = [t for t in threads if 1 <= t <= cpus]
    res: dict = {
        "config": {
            "n": n,
            "batch_size": batch_size,
            "epochs": epochs,
            "threads": threads,
            "baseline_n": baseline_n,
            "baseline_workers": baseline_workers,
            "bank_size": bank_size,
            "cpus": cpus,
        },  # fmt: skip
        "loadavg": {"start": os.getloadavg()},
    }
    images, labels, source = load_images(n, raw_dir)
    bank, bank_source = make_bank(bank_size)
    res["data"] = {"images": source, "bank": bank_source}
    log(f"data: {len(images)} images from {source}; bank {bank.shape} from {bank_source}")
    tmp = tempfile.TemporaryDirectory(prefix="bench-loader-") if workdir is None else None
    wd = Path(workdir) if workdir is not None else Path(tmp.name)
    try:
        beton = wd / "bench_train.beton"
        write_beton(beton, images, labels)
        bank_npy = wd / "bench_bank.npy"
        np.save(bank_npy, bank)

        from fastmix.bench.baseline_loader import make_baseline_loader

        from fastmix.augment.spec import Augmentation
        from fastmix.data.loader import make_train_loader

        # Baseline loaders first, each warmed (its persistent worker processes forked) before any
        # Numba thread pool exists; then every variant's loaders run round by round.
        base_loaders = {
            v: make_baseline_loader(
                v, images[:baseline_n], labels[:baseline_n], bank, batch_size, baseline_workers
            )  # fmt: skip
            for v in variants
        }
        for loader in base_loaders.values():
            time_epoch(loader)
        res["baseline"], res["ffcv"] = {}, {}
        res["speedup_vs_baseline"], res["speedup_spread"] = {}, {}
        res["cpu_efficiency_vs_baseline"], res["thread_scaling"] = {}, {}
        res["machine_scaling"] = {}
        both = 1 in threads and 2 in threads  # then: 2 vs 1 thread, and the machine probes
        for v in variants:
            loaders = {"baseline": base_loaders[v]}
            for t in threads:
                loaders[f"fastmix_{t}"] = make_train_loader(
                    beton, Augmentation(v), batch_size, seed=0, fractal_bank=bank, num_workers=t
                )
            if both:  # what the machine gives 2 threads, in the same rounds
                for kind in PROBE_KINDS:
                    for t in (1, 2):
                        loaders[f"machine_{kind}_{t}"] = MachineProbe(t, kind)
            timed = interleaved_epochs(loaders, epochs, warmup=1)
            if both:
                res["machine_scaling"][v] = {
                    kind: round_ratios(timed[f"machine_{kind}_2"], timed[f"machine_{kind}_1"])
                    for kind in PROBE_KINDS
                }
            res["baseline"][v] = base = timed["baseline"]
            res["ffcv"][v] = {str(t): timed[f"fastmix_{t}"] for t in threads}
            log(
                f"baseline {v:7s} {baseline_workers} workers: {base['img_per_s']:>10,.0f} img/s "
                f"({base['img_per_cpu_s']:>9,.0f} img per CPU-s)"
            )
            for t in threads:
                r = res["ffcv"][v][str(t)]
                log(
                    f"fastmix  {v:7s} {t} thread(s): {r['img_per_s']:>10,.0f} img/s "
                    f"({r['img_per_cpu_s']:>9,.0f} img per CPU-s)"
                )
            best = max(threads, key=lambda t: res["ffcv"][v][str(t)]["img_per_s"])
            spread = round_ratios(res["ffcv"][v][str(best)], base)
            res["speedup_vs_baseline"][v] = spread["median"]
            res["speedup_spread"][v] = spread
            res["cpu_efficiency_vs_baseline"][v] = (
                res["ffcv"][v][str(best)]["img_per_cpu_s"] / base["img_per_cpu_s"]
            )
            if both:
                res["thread_scaling"][v] = round_ratios(res["ffcv"][v]["2"], res["ffcv"][v]["1"])
        if not res["thread_scaling"]:
            del res["thread_scaling"], res["machine_scaling"]
        res["loadavg"]["after_throughput"] = os.getloadavg()
        if latency:
            res["first_batch"] = first_batch_latency(beton, bank_npy, batch_size, max(threads))
            for k, r in res["first_batch"].items():
                log(f"first PixMix batch, {k} Numba cache: {r['first_batch_s']:.2f} s "
                    f"(+ import {r['import_s']:.2f} s, loader {r['loader_s']:.2f} s)")  # fmt: skip
        if preview is not None:
            write_preview(Path(preview), images, bank)
            res["preview"] = str(preview)
            log(f"preview: {preview}")
    finally:
        if tmp is not None:
            tmp.cleanup()
    res["loadavg"]["end"] = os.getloadavg()
    for v, s in res["speedup_vs_baseline"].items():
        lo, hi = res["speedup_spread"][v]["min"], res["speedup_spread"][v]["max"]
        scaling = res.get("thread_scaling", {}).get(v)
        extra = (
            f", 2 vs 1 thread {scaling['median']:.2f}x [{scaling['min']:.2f}-{scaling['max']:.2f}]"
            if scaling
            else ""
        )
        machine = res.get("machine_scaling", {}).get(v)
        if machine:
            extra += (
                " (machine, same rounds: "
                + ", ".join(f"{kind} loop {m['median']:.2f}x" for kind, m in machine.items())
                + ")"
            )
        eff = res["cpu_efficiency_vs_baseline"][v]
        log(
            f"{v:7s}: fastmix / baseline {s:.1f}x [{lo:.1f}-{hi:.1f}] wall-clock, "
            f"{eff:.1f}x per CPU-s{extra}"
        )
    log(f"load average (1 min) start / end: {res['loadavg']['start'][0]:.2f} / "
        f"{res['loadavg']['end'][0]:.2f} on {cpus} CPUs")  # fmt: skip
    return res


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=55_000, help="images in the beton")
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--epochs", type=int, default=7, help="timed rounds per figure (median)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--baseline-n", type=int, default=8192, help="images per baseline epoch")
    ap.add_argument("--baseline-workers", type=int, default=2)
    ap.add_argument("--raw", default=None, help="folder holding mnist/ (default ../shared/data)")
    ap.add_argument("--no-latency", action="store_true", help="skip the cold/warm JIT timing")
    ap.add_argument("--json", nargs="?", const="-", default=None,
                    help="write the results as JSON to PATH (stdout without PATH)")  # fmt: skip
    ap.add_argument("--preview", default=None, help="PNG grid of augmented samples")
    a = ap.parse_args(argv)
    quiet = a.json == "-"
    res = run_loader_bench(
        n=a.n, batch_size=a.batch_size, epochs=a.epochs, threads=a.threads, variants=a.variants,
        baseline_n=min(a.baseline_n, a.n), baseline_workers=a.baseline_workers, raw_dir=a.raw,
        latency=not a.no_latency, preview=a.preview,
        log=(lambda s: print(s, file=sys.stderr)) if quiet else print,
    )  # fmt: skip
    if a.json == "-":
        print(json.dumps(res, indent=2))
    elif a.json:
        Path(a.json).write_text(json.dumps(res, indent=2) + "\n")
    return res


if __name__ == "__main__":
    main()
