"""Training throughput and end-to-end wall time, fastmix beside the reference way, one process.

* ``run_train_bench``: what each model costs to train on this machine: images/s of the real
  training step (``fastmix.train.run.Run.train_step``) fed from device-resident batches (no
  loader, no augmentation: the model's own cost), for one run on every core and for six runs
  stepped side by side on threads (``fastmix.runtime.Workers``: one torch thread each on a
  CPU; the trainer itself now steps them on worker processes, which ``run_e2e_bench``
  measures), with parameters and FLOPs. For LeNet presets also six runs fused into
  one network (``fastmix.train.fused``: grouped convolutions, batched matmuls) on every core,
  the horizontal-fusion candidate. Model presets alternate round by round, so
  a drift of the machine's speed hits them all; figures are medians over rounds.
* ``run_e2e_bench``: the whole job a user runs. fastmix trains the requested variants at
  default settings with ``train_runs`` (one job, one pass over the data per worker); then the
  reference way trains them as the Outlier Exposure repository's MNIST scripts do
  (hendrycks/outlier-exposure ``MNIST/baseline.py`` / ``oe_scratch.py``: its ConvNet, the
  ``oe_paper`` preset's recipe, a torch DataLoader with per-sample Pillow PixMix or
  salt-and-pepper in 2 worker processes, fp32, one variant after another;
  ``bench/baseline_train.py``). Reports both wall times, their ratio and every test accuracy.
* ``bench_compile``: eager vs ``torch.compile`` training step and inference.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch

from fastmix.config import VARIANTS, load_config
from fastmix.runtime import resolve_runtime, usable_cores

MODEL_PRESETS = ("lenet_oe", "lenet", "lenet32", "convnet_flat", "convnet")


def _sync(rt) -> None:
    """Wait for the GPU's queued work (CUDA launches return at once): before reading a timer."""
    if rt.device.type == "cuda":
        torch.cuda.synchronize(rt.device)


def _runs(preset: str, n: int, tmp: Path, extra: tuple[str, ...] = ()):
    from fastmix.train.run import Run

    runs, batch = [], None
    for i in range(n):
        cfg = load_config("base", [preset], ["train.log_every=1000000000", *extra])
        rt = resolve_runtime(
            cfg["train"]["device"],
            cfg["train"]["precision"],
            cfg["train"]["channels_last"],
            cfg["train"]["compile"],
        )
        runs.append(Run(cfg, tmp / f"{preset}-{i}", rt, {}, 10**9, resume=False))
        batch = cfg["train"]["batch_size"]
    return runs, batch


def _step(run, x, y) -> None:
    run.train_step(x, y, None)


class _FusedSix:
    """Six runs' LeNets as one ``FusedLeNet`` with the runs' SGD settings; ``step(x, y)`` trains
    all six on six views of the batch (the same tensor here: the cost does not depend on it)."""

    def __init__(self, runs) -> None:
        from fastmix.train.fused import FusedLeNet

        tc = runs[0].cfg["train"]
        self.rt = runs[0].rt
        self.model = FusedLeNet([r.model for r in runs]).to(self.rt.device)
        if self.rt.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.opt = torch.optim.SGD(
            self.model.decay_groups(tc["weight_decay"]),
            lr=tc["lr"],
            momentum=tc["momentum"],
            nesterov=True,
        )
        self.g = len(runs)

    def step(self, x, y) -> None:
        xs = x.expand(-1, self.g, -1, -1).contiguous(
            memory_format=torch.channels_last if self.rt.channels_last else torch.contiguous_format
        )
        with self.rt.autocast():
            logits = self.model(xs).float()
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.repeat(self.g)) * self.g
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()


def run_train_bench(
    models: tuple[str, ...] = MODEL_PRESETS, steps: int = 20, rounds: int = 3, log=print
) -> dict:
    """Images/s of each model preset's training step, one run and six side by side."""
    from fastmix.runtime import Workers
    from fastmix.train.models import count_params, flops_per_image

    cores = len(usable_cores())
    rates: dict[str, dict[str, list[float]]] = {
        m: {"one": [], "six": [], "six_fused": []} for m in models
    }
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        setups = {}
        for m in models:
            one, batch = _runs(m, 1, Path(tmp))
            six, _ = _runs(m, 6, Path(tmp))
            x = torch.rand(batch, 1, 28, 28, device=one[0].rt.device)
            y = torch.randint(0, 10, (batch,), device=one[0].rt.device)
            fused = _FusedSix(six) if six[0].cfg["model"]["name"] == "lenet" else None
            setups[m] = (one, six, x, y, batch, fused)
        for r in range(rounds + 1):  # round 0 warms up
            for m in models if r % 2 else models[::-1]:
                one, six, x, y, batch, fused = setups[m]
                if fused is not None:
                    torch.set_num_threads(cores)
                    t0 = time.perf_counter()
                    for _ in range(steps if r else 2):
                        fused.step(x, y)
                    _sync(fused.rt)
                    if r:
                        rates[m]["six_fused"].append(6 * steps * batch / (time.perf_counter() - t0))
                for mode, runs in (("one", one), ("six", six)):
                    n = min(len(runs), cores) if runs[0].rt.device.type == "cpu" else 1
                    workers = Workers(n, max(1, cores // n))
                    t0 = time.perf_counter()
                    for _ in range(steps if r else 2):
                        workers.map(_step, [(u, x, y) for u in runs])
                    _sync(runs[0].rt)
                    if r:
                        rates[m][mode].append(
                            steps * batch * len(runs) / (time.perf_counter() - t0)
                        )
                    workers.close()
    out = {"cores": cores, "steps": steps, "rounds": rounds, "models": {}}
    for m in models:
        model = setups[m][0][0].model
        row = {
            "batch": setups[m][4],
            "runtime": str(setups[m][0][0].rt),
            "params": count_params(model),
            "flops_per_image": flops_per_image(model.cpu()),
            "one_run_images_per_s": statistics.median(rates[m]["one"]),
            "six_runs_images_per_s": statistics.median(rates[m]["six"]),
            "six_fused_images_per_s": (
                statistics.median(rates[m]["six_fused"]) if rates[m]["six_fused"] else None
            ),
            "rounds": rates[m],
        }
        out["models"][m] = row
        log(
            f"train {m:13s} {row['params']:>8,} params {row['flops_per_image'] / 1e6:6.2f} "
            f"MFLOPs  one run {row['one_run_images_per_s']:>8,.0f} img/s, six runs "
            f"{row['six_runs_images_per_s']:>8,.0f} img/s"
            + (
                f", six fused {row['six_fused_images_per_s']:>8,.0f} img/s"
                if row["six_fused_images_per_s"]
                else ""
            )
        )
    return out


def bench_compile(preset: str = "lenet", steps: int = 20) -> dict:
    """Eager vs torch.compile: training step and inference, ms per batch (median)."""
    from fastmix.data.inputs import to_model_input
    from fastmix.train.models import build_model

    cfg = load_config("base", [preset])
    rt = resolve_runtime()
    out = {}
    for mode in ("eager", "compiled"):
        torch.manual_seed(0)
        model = build_model(cfg["model"]["name"], cfg["model"]["width"]).to(rt.device)
        if rt.channels_last:
            model = model.to(memory_format=torch.channels_last)
        net = torch.compile(model) if mode == "compiled" else model
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        batch = cfg["train"]["batch_size"]
        x = to_model_input(torch.rand(batch, 1, 28, 28), rt.device, rt.channels_last)
        y = torch.randint(0, 10, (batch,), device=rt.device)
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
        out[mode] = {
            "train_ms": 1000 * statistics.median(times),
            "first_step_s": first,
            "infer_ms": 1000 * statistics.median(inf),
        }
    out["train_speedup"] = out["eager"]["train_ms"] / out["compiled"]["train_ms"]
    out["infer_speedup"] = out["eager"]["infer_ms"] / out["compiled"]["infer_ms"]
    return out


_COMPILE_CHILD = """
import sys, time
t0 = time.perf_counter()
import torch
from fastmix.config import load_config
from fastmix.runtime import resolve_runtime
from fastmix.train.models import build_model
cfg = load_config("base", [sys.argv[1]])
rt = resolve_runtime()
torch.manual_seed(0)
model = build_model(cfg["model"]["name"], cfg["model"]["width"]).to(rt.device)
if rt.channels_last:
    model = model.to(memory_format=torch.channels_last)
net = torch.compile(model)
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
x = torch.rand(cfg["train"]["batch_size"], 1, 28, 28, device=rt.device)
y = torch.randint(0, 10, (x.shape[0],), device=rt.device)
t1 = time.perf_counter()
with rt.autocast():
    loss = torch.nn.functional.cross_entropy(net(x).float(), y)
loss.backward()
opt.step()
if rt.device.type == "cuda":
    torch.cuda.synchronize()
print(time.perf_counter() - t1)
"""


def compile_latency(preset: str = "lenet") -> dict:
    """Seconds to the first compiled training step in a fresh process: with an empty inductor
    cache (the first process on a machine) and with the cache that run left (every later one);
    the cache is a temporary folder (``TORCHINDUCTOR_CACHE_DIR``)."""
    import os
    import subprocess
    import sys

    out = {}
    with tempfile.TemporaryDirectory(prefix="inductor-") as cache:
        env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache)
        for name in ("cold", "warm"):
            res = subprocess.run(
                [sys.executable, "-c", _COMPILE_CHILD, preset],
                env=env,
                capture_output=True,
                text=True,
                timeout=900,
                check=True,
            )
            out[f"{name}_first_step_s"] = float(res.stdout.strip().splitlines()[-1])
    return out


def _test_accuracy(run_dir: Path, test: tuple) -> float:
    from fastmix.train.checkpoint import load_run
    from fastmix.train.run import accuracy

    model, _ = load_run(run_dir, which="last")
    return accuracy(model, test[0], test[1], resolve_runtime("cpu", "fp32", "off"))


def run_e2e_bench(
    data_dir: str | Path,
    variants: tuple[str, ...] = VARIANTS,
    presets: tuple[str, ...] = (),
    reference_steps: int = 0,
    log=print,
) -> dict:
    """All ``variants`` the fastmix way (default settings plus ``presets``) and the reference
    way (``oe_paper``), one after the other in this process: wall times, ratio, accuracies.
    ``reference_steps`` > 0 stops each reference run after that many steps (smoke tests only;
    the record says so)."""
    from fastmix.bench.baseline_train import train_baseline
    from fastmix.converters.beton import read_beton

    from fastmix.train.run import require_betons
    from fastmix.train.trainer import RunRequest, train_runs

    data_dir = Path(data_dir)
    test = read_beton(data_dir / "mnist_test.beton")
    res: dict = {
        "variants": list(variants),
        "presets": list(presets),
        "fastmix": {},
        "reference": {},
    }
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        cfgs = [load_config(v, list(presets), [{"data": {"dir": str(data_dir)}}]) for v in variants]
        t0 = time.perf_counter()
        train_runs(
            [RunRequest(c, Path(tmp) / v) for c, v in zip(cfgs, variants, strict=True)],
            progress=False,
            log=log,
        )
        res["fastmix"]["wall_s"] = time.perf_counter() - t0
        res["fastmix"]["test_acc"] = {v: _test_accuracy(Path(tmp) / v, test) for v in variants}
        res["fastmix"]["epochs"] = cfgs[0]["train"]["epochs"]
        res["fastmix"]["model"] = cfgs[0]["model"]["name"]
    log(
        f"e2e fastmix  {len(variants)} runs: {res['fastmix']['wall_s']:7.1f} s  "
        f"{res['fastmix']['test_acc']}"
    )
    extra = [{"train": {"max_steps": reference_steps}}] if reference_steps else []
    res["reference"]["max_steps"] = reference_steps
    res["reference"].update(wall_s=0.0, test_acc={}, per_variant_s={})
    for v in variants:
        cfg = load_config(v, ["oe_paper"], [{"data": {"dir": str(data_dir)}}, *extra])
        betons = require_betons(cfg) | {"test": data_dir / "mnist_test.beton"}
        dev = resolve_runtime(cfg["train"]["device"]).device
        r = train_baseline(cfg, betons, device=dev)
        res["reference"]["wall_s"] += r["wall_s"]
        res["reference"]["per_variant_s"][v] = r["wall_s"]
        res["reference"]["test_acc"][v] = r["test_acc"]
        res["reference"]["epochs"] = cfg["train"]["epochs"]
        log(f"e2e reference {v:10s} {r['wall_s']:7.1f} s  test acc {r['test_acc']:.4f}")
    res["ratio"] = res["reference"]["wall_s"] / res["fastmix"]["wall_s"]
    log(
        f"e2e: fastmix {res['fastmix']['wall_s']:.1f} s, reference way "
        f"{res['reference']['wall_s']:.1f} s ({res['reference']['epochs']} epochs): "
        f"{res['ratio']:.2f}x"
    )
    return res
