"""The LeNets' 2x2 max-pool kernels (``fastmix.train.pool``) against ``F.max_pool2d``: the real
training step of one run (``Run.train_step``, one torch thread, device-resident batches) with
either pool, the pool alone (forward + backward, bf16) at the default LeNet's two map sizes,
and the pool in fp32 inference on evaluation's batches of 1000.
Rounds alternate which goes first; figures are medians."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from fastmix.runtime import set_torch_threads


def _reference_pool(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, 2)


def _time(fn, n: int) -> float:
    """Seconds per call of ``fn`` over ``n`` calls, after two warm-up calls."""
    fn()
    fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def _pool_alone(pool, x: torch.Tensor, g: torch.Tensor):
    def call() -> None:
        xi = x.detach().requires_grad_()
        pool(xi).backward(g)

    return call


def _pool_infer(pool, x: torch.Tensor):
    def call() -> None:
        with torch.inference_mode():
            pool(x)

    return call


def bench_pool(preset: str = "lenet", steps: int = 30, rounds: int = 5, log=print) -> dict:
    """Step ms with the kernel and with ``F.max_pool2d``, their ratio, and the pool alone."""
    from fastmix.bench.bench_train import _runs

    from fastmix.train import models

    set_torch_threads(1)
    kernel = models.max_pool2x2
    pools = {"kernel": kernel, "max_pool2d": _reference_pool}
    step_s: dict[str, list[float]] = {k: [] for k in pools}
    alone_s: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-pool-") as tmp:
        (run,), batch = _runs(preset, 1, Path(tmp))
        x = torch.randint(0, 256, (batch, 1, 28, 28), dtype=torch.uint8)
        y = torch.randint(0, 10, (batch,))
        w = run.model.conv1.out_channels
        maps = {"conv1": (batch, w, 24, 24), "conv2": (batch, 2 * w, 8, 8)}
        alone_s = {m: {k: [] for k in pools} for m in maps}
        infer_s = {m: {k: [] for k in pools} for m in maps}  # fp32, evaluation's batch 1000
        for r in range(rounds):
            for name in list(pools) if r % 2 == 0 else list(pools)[::-1]:
                models.max_pool2x2 = pools[name]
                try:
                    step_s[name].append(_time(lambda: run.train_step(x, y, None), steps))
                finally:
                    models.max_pool2x2 = kernel
                for m, shape in maps.items():
                    xm = torch.randn(shape).to(torch.bfloat16)
                    xm = xm.contiguous(memory_format=torch.channels_last)
                    g = torch.randn(*shape[:2], shape[2] // 2, shape[3] // 2).to(torch.bfloat16)
                    g = g.contiguous(memory_format=torch.channels_last)
                    alone_s[m][name].append(_time(_pool_alone(pools[name], xm, g), steps))
                    xf = torch.randn(1000, *shape[1:]).contiguous(memory_format=torch.channels_last)
                    infer_s[m][name].append(_time(_pool_infer(pools[name], xf), max(2, steps // 5)))
    med = {k: statistics.median(v) for k, v in step_s.items()}
    out = {
        "preset": preset,
        "batch": batch,
        "step_ms": {k: v * 1e3 for k, v in med.items()},
        "step_speedup": med["max_pool2d"] / med["kernel"],
        "pool_alone_ms": {
            m: {k: statistics.median(v) * 1e3 for k, v in d.items()} for m, d in alone_s.items()
        },
        "fp32_inference_1000_ms": {
            m: {k: statistics.median(v) * 1e3 for k, v in d.items()} for m, d in infer_s.items()
        },
        "rounds_ms": {k: [t * 1e3 for t in v] for k, v in step_s.items()},
    }
    a = out["pool_alone_ms"]
    log(
        f"pool ({preset}, batch {batch}, one thread): step {out['step_ms']['kernel']:.2f} ms "
        f"with the kernel vs {out['step_ms']['max_pool2d']:.2f} ms with F.max_pool2d "
        f"({out['step_speedup']:.2f}x); the pool alone, fwd+bwd: conv1 map "
        f"{a['conv1']['kernel']:.3f} vs {a['conv1']['max_pool2d']:.3f} ms, conv2 map "
        f"{a['conv2']['kernel']:.3f} vs {a['conv2']['max_pool2d']:.3f} ms; fp32 inference, "
        f"1000 images: conv1 map {out['fp32_inference_1000_ms']['conv1']['kernel']:.2f} vs "
        f"{out['fp32_inference_1000_ms']['conv1']['max_pool2d']:.2f} ms"
    )
    return out
