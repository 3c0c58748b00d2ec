"""Training throughput and end-to-end wall time, fastmix beside the baselines, one process.

* ``run_train_bench``: images/s of the real training step fed by the real FFCV loaders, per
  variant (median over timed windows after warm-up), as a fraction of the same step fed from
  device-resident tensors (airbench's way: the physical limit, no loader, no augmentation); the
  PixMix / none epoch-time ratio (does the loader hide behind compute?); eager vs
  ``torch.compile`` step time and inference time.
* ``run_e2e_bench``: whole training runs at equal epochs, fastmix (``fastmix.train.trainer.train``)
  vs the OE reference's way (``bench/baseline_train.py``), with wall-time ratio and test accuracy.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch

from fastmix.config import load_config
from fastmix.runtime import resolve_runtime, set_torch_threads
from fastmix.train.models import build_model
from fastmix.train.trainer import _make_step, _to_input, require_betons


def _cfg(variant: str, data_dir: str | Path, overrides: tuple[str, ...] = ()):
    return load_config(variant, [], [f"data.dir={str(data_dir)!r}", *overrides])


class ResidentBatches:
    """airbench's way, the physical limit of a data path: the whole training set (and the
    outlier set) as float tensors already on the device, batches gathered by a random permutation
    per pass, no augmentation, no loader. Same batch shapes as the real loaders."""

    def __init__(self, cfg, betons: dict[str, Path], device: torch.device, batch: int) -> None:
        from fastmix.converters.beton import read_beton

        x, y = read_beton(betons["train"])
        self.x = torch.from_numpy(x).float().div_(255).unsqueeze(1).to(device)
        self.y = torch.from_numpy(y).long().to(device)
        self.batch = batch
        self.xo = None
        if cfg["oe"]["enabled"]:
            xo, _ = read_beton(betons["outlier"])
            self.xo = torch.from_numpy(xo).float().div_(255).unsqueeze(1).to(device)
            self.batch_out = batch * cfg["oe"]["ratio"]
        self.gen = torch.Generator().manual_seed(0)
        self._perm, self._at = torch.empty(0, dtype=torch.long), 0

    def next(self):
        if self._at + self.batch > len(self._perm):
            self._perm, self._at = torch.randperm(len(self.x), generator=self.gen), 0
        idx = self._perm[self._at : self._at + self.batch].to(self.x.device)
        self._at += self.batch
        xo = None
        if self.xo is not None:
            oidx = torch.randint(len(self.xo), (self.batch_out,), generator=self.gen)
            xo = self.xo[oidx.to(self.xo.device)]
        return self.x[idx], self.y[idx], xo


def bench_variant(variant: str, data_dir: str | Path, steps: int = 40, warmup: int = 8,
                  repeats: int = 3) -> dict:  # fmt: skip
    """Images/s of loader + step for one variant (in-distribution and total incl. outliers),
    and of the same step fed from device-resident tensors (``ResidentBatches``): windows of
    ``steps`` steps alternate between the two, so ``fraction_of_resident`` (median of the
    per-window-pair ratios) compares like with like on a machine whose speed drifts."""
    from fastmix.data.streams import build_loaders

    cfg = _cfg(variant, data_dir)
    betons = require_betons(cfg)
    loaders = build_loaders(cfg, betons)
    rt = resolve_runtime()
    model = build_model().to(rt.device)
    if rt.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    step = _make_step(model, opt, cfg, rt)
    set_torch_threads()
    it = loaders.epoch(0)
    resident = ResidentBatches(cfg, betons, rt.device, cfg["train"]["batch_size"])
    sources = {"loader": lambda: next(it), "resident": resident.next}
    rates: dict[str, list[float]] = {"loader": [], "resident": []}
    n_in = 0
    for r in range(repeats + 1):
        for name, source in sources.items():
            t0, seen = time.perf_counter(), 0
            for _ in range(warmup if r == 0 else steps):
                x, y, xo = source()
                step(x, y, xo)
                seen += len(y)
                n_in = len(y)
            if r:
                rates[name].append(seen / (time.perf_counter() - t0))
    ratio = 1 + (cfg["oe"]["ratio"] if cfg["oe"]["enabled"] else 0)
    med = statistics.median(rates["loader"])
    fractions = [a / b for a, b in zip(rates["loader"], rates["resident"], strict=True)]
    return {
        "images_per_s": med,
        "total_images_per_s": med * ratio,
        "spread": [min(rates["loader"]), max(rates["loader"])],
        "resident_images_per_s": statistics.median(rates["resident"]),
        "fraction_of_resident": statistics.median(fractions),
        "fraction_spread": [min(fractions), max(fractions)],
        "batch": n_in,
        "runtime": str(rt),
    }


def _sync(rt) -> None:
    """Wait for the GPU's queued work (CUDA launches return at once): before reading a timer."""
    if rt.device.type == "cuda":
        torch.cuda.synchronize(rt.device)


def bench_compile(batch_size: int = 256, steps: int = 20) -> dict:
    """Eager vs torch.compile: training step and inference, ms per batch (median)."""
    rt = resolve_runtime()
    out = {}
    for mode in ("eager", "compiled"):
        torch.manual_seed(0)
        model = build_model().to(rt.device)
        if rt.channels_last:
            model = model.to(memory_format=torch.channels_last)
        net = torch.compile(model) if mode == "compiled" else model
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        x = _to_input(torch.rand(batch_size, 1, 28, 28), rt)
        y = torch.randint(0, 10, (batch_size,), device=rt.device)
        t0 = time.perf_counter()
        times = []
        for i in range(steps + 3):
            t = time.perf_counter()
            with rt.autocast():
                loss = torch.nn.functional.cross_entropy(net(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            _sync(rt)
            if i >= 3:
                times.append(time.perf_counter() - t)
            if i == 0:
                first = time.perf_counter() - t0
        net.eval()
        inf = []
        with torch.inference_mode():
            for i in range(steps + 3):
                t = time.perf_counter()
                with rt.autocast():
                    net(x)
                _sync(rt)
                if i >= 3:
                    inf.append(time.perf_counter() - t)
        out[mode] = {"train_ms": 1000 * statistics.median(times), "first_step_s": first,
                     "infer_ms": 1000 * statistics.median(inf)}
    out["train_speedup"] = out["eager"]["train_ms"] / out["compiled"]["train_ms"]
    out["infer_speedup"] = out["eager"]["infer_ms"] / out["compiled"]["infer_ms"]
    return out


def run_train_bench(data_dir: str | Path, variants: tuple[str, ...], steps: int = 40,
                    compile_check: bool = True, log=print) -> dict:
    res: dict = {"variants": {}}
    for v in variants:
        r = bench_variant(v, data_dir, steps=steps)
        res["variants"][v] = r
        log(f"train {v:10s} {r['images_per_s']:8.0f} img/s (in-dist.), "
            f"{r['total_images_per_s']:8.0f} img/s total  [{r['spread'][0]:.0f}-"
            f"{r['spread'][1]:.0f}]; device-resident {r['resident_images_per_s']:8.0f} img/s, "
            f"fastmix = {r['fraction_of_resident']:.2f} of it")  # fmt: skip
    vs = res["variants"]
    if "base" in vs and "pixmix" in vs:
        res["pixmix_vs_none_epoch_time"] = vs["base"]["images_per_s"] / vs["pixmix"][
            "images_per_s"]
        log(f"epoch time pixmix / none: {res['pixmix_vs_none_epoch_time']:.3f}x")
    if compile_check:
        c = bench_compile()
        res["compile"] = c
        log(f"step eager {c['eager']['train_ms']:.1f} ms, compiled {c['compiled']['train_ms']:.1f}"
            f" ms ({c['train_speedup']:.2f}x); inference eager {c['eager']['infer_ms']:.1f} ms, "
            f"compiled {c['compiled']['infer_ms']:.1f} ms ({c['infer_speedup']:.2f}x)")
    return res


def run_e2e_bench(data_dir: str | Path, variants: tuple[str, ...], epochs: int = 1,
                  log=print) -> dict:
    """fastmix vs the reference's loop, equal epochs, per variant: wall time and test accuracy."""
    from fastmix.bench.baseline_train import train_baseline
    from fastmix.converters.beton import read_beton

    from fastmix.train.trainer import accuracy, train

    res: dict = {"epochs": epochs, "variants": {}}
    tx, ty = read_beton(Path(data_dir) / "mnist_test.beton")
    for v in variants:
        cfg = _cfg(v, data_dir, (f"train.epochs={epochs}",))
        betons = require_betons(cfg) | {"test": Path(data_dir) / "mnist_test.beton"}
        with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
            t0 = time.perf_counter()
            r = train(cfg, Path(tmp) / v, progress=False)
            fm_wall = time.perf_counter() - t0
            from fastmix.train.checkpoint import load_run

            model, _ = load_run(Path(tmp) / v, which="last")
            fm_acc = accuracy(model, tx, ty, resolve_runtime("cpu", "fp32", "off"))
        base = train_baseline(cfg, betons, device=resolve_runtime(cfg["train"]["device"]).device)
        row = {"fastmix_wall_s": fm_wall, "fastmix_images_per_s": r.images_per_s,
               "fastmix_test_acc": fm_acc, "baseline_wall_s": base["wall_s"],
               "baseline_images_per_s": base["images_per_s"],
               "baseline_test_acc": base["test_acc"],
               "wall_ratio": base["wall_s"] / fm_wall,
               "acc_diff_points": 100 * (fm_acc - base["test_acc"])}
        res["variants"][v] = row
        log(f"e2e {v:10s} fastmix {fm_wall:6.1f} s ({fm_acc:.4f})  reference-style "
            f"{base['wall_s']:6.1f} s ({base['test_acc']:.4f})  -> {row['wall_ratio']:.2f}x, "
            f"accuracy diff {row['acc_diff_points']:+.2f} points")
    return res
