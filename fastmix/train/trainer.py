"""The training loop for all six variants: FFCV loaders, optional Outlier Exposure, bf16 on AMX
CPUs and CUDA, atomic checkpoints, exact resume, DDP under torchrun.

Optimiser: SGD with Nesterov momentum 0.9 and weight decay 5e-4; the learning rate rises
linearly from 0 to ``train.lr`` over the first ``warmup_frac`` of the steps, then falls linearly
to 0 (a one-cycle / triangular schedule, as in airbench), set per step from the global step so a
resumed run follows the same schedule. Loss: cross-entropy, plus the Outlier Exposure term
(``fastmix.train.oe``) when ``oe.enabled``.
"""

from __future__ import annotations

import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from fastmix.config import Config, config_hash
from fastmix.errors import ConfigError, TrainingError
from fastmix.runtime import Runtime, resolve_runtime, set_torch_threads
from fastmix.train import distributed as dist
from fastmix.train import run_dir as rd
from fastmix.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from fastmix.train.models import build_model
from fastmix.train.oe import oe_loss


@dataclass
class TrainResult:
    run_dir: Path
    variant: str
    epochs: int
    steps: int
    best_val_acc: float
    final_val_acc: float
    seconds: float
    images_per_s: float


def lr_at(step: int, total: int, peak: float, warmup_frac: float) -> float:
    """Triangular schedule: linear 0 -> peak over ``warmup_frac * total`` steps, then -> 0."""
    warm = max(1, int(round(warmup_frac * total)))
    if step < warm:
        return peak * (step + 1) / warm
    return peak * max(0.0, (total - step) / max(1, total - warm))


def require_betons(cfg: Config) -> dict[str, Path]:
    """Paths of the betons this config trains on; ConfigError naming any that is missing."""
    from fastmix.converters.build import load_manifest, manifest_beton_path

    data = Path(cfg["data"]["dir"])
    entries = load_manifest(data)["betons"] if data.is_dir() else {}
    need = {"train": cfg["data"]["train"], "val": cfg["data"]["val"]}
    if cfg["augment"]["kind"] == "pixmix":
        need["mixing"] = cfg["data"]["mixing"]
    if cfg["oe"]["enabled"]:
        need["outlier"] = cfg["oe"]["source"]
    out, missing = {}, []
    for role, name in need.items():
        path = manifest_beton_path(data, name, entries[name]) if name in entries else None
        if path is not None and path.is_file():
            out[role] = path
        else:
            missing.append(f"{role}={name}")
    if missing:
        raise ConfigError(
            f"{data}: betons not found: {', '.join(missing)}; run `fastmix convert --out {data}`"
            + (f" (available: {', '.join(sorted(entries))})" if entries else "")
        )
    return out


def _to_input(x: Any, rt: Runtime) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.dtype == torch.uint8:
        x = x.float().div_(255)
    if x.ndim == 3:
        x = x.unsqueeze(1)
    x = x.to(rt.device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if rt.channels_last else x


@torch.inference_mode()
def accuracy(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray, rt: Runtime,
             batch_size: int = 1000) -> float:
    """Top-1 accuracy of ``model`` (eval mode) on uint8 images."""
    was = model.training
    model.eval()
    correct = 0
    for i in range(0, len(images), batch_size):
        x = _to_input(images[i:i + batch_size], rt)
        with rt.autocast():
            pred = model(x).argmax(1).cpu().numpy()
        correct += int((pred == labels[i:i + batch_size]).sum())
    model.train(was)
    return correct / len(images)


def train(cfg: Config, run_dir: str | os.PathLike, resume: bool = False,
          progress: bool = True, stop_after_steps: int | None = None) -> TrainResult:
    """Train one variant into ``run_dir`` (or continue it with ``resume``).

    ``stop_after_steps`` ends the process's work after that many global steps *without*
    finishing the run (it simulates an interruption for tests).
    """
    run_dir = Path(run_dir)
    if resume:
        if not (run_dir / rd.CONFIG_FILE).is_file():
            raise ConfigError(f"{run_dir}: nothing to resume (no config.toml)")
        cfg = rd.read_run_config(run_dir)
    tc = cfg["train"]
    # everything that can refuse the config (no such device, missing betons) before any write
    rt = resolve_runtime(tc["device"], tc["precision"], tc["channels_last"], tc["compile"])
    paths = require_betons(cfg)
    dist.init_from_env(rt.device)
    if rt.device.type == "cuda" and rt.device.index is not None:
        torch.cuda.set_device(rt.device)  # FFCV's streams and events live on the current GPU
    with rd.lock(run_dir) if dist.is_main() else nullcontext():
        if dist.is_main():
            rd.remove_leftovers(run_dir)
            if not resume:
                rd.prepare(cfg, run_dir)
        return _train_locked(cfg, run_dir, resume, rt, paths, progress, stop_after_steps)


def _train_locked(cfg: Config, run_dir: Path, resume: bool, rt: Runtime,
                  paths: dict[str, Path], progress: bool,
                  stop_after_steps: int | None) -> TrainResult:
    """The training loop of ``train()``, once the run directory is prepared and locked."""
    from fastmix.data.streams import build_loaders  # imports ffcv (slow): only when training

    tc, chash = cfg["train"], config_hash(cfg)
    torch.manual_seed(tc["seed"])
    model = build_model(cfg["model"]["name"], cfg["model"]["width"]).to(rt.device)
    if rt.channels_last:
        model = model.to(memory_format=torch.channels_last)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": tc["weight_decay"]},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=tc["lr"], momentum=tc["momentum"], nesterov=tc["momentum"] > 0,
    )
    loaders = build_loaders(cfg, paths, distributed=dist.world_size() > 1)
    set_torch_threads(None if rt.device.type == "cpu" else 1)
    from fastmix.converters.beton import read_beton

    val_x, val_y = read_beton(paths["val"])
    set_torch_threads()
    spe = loaders.steps_per_epoch
    total = tc["epochs"] * spe
    if tc["max_steps"]:
        total = min(total, tc["max_steps"])
    epochs = math.ceil(total / spe)

    start_step, best = 0, -1.0
    last_path, best_path = rd.checkpoint_path(run_dir, "last"), rd.checkpoint_path(run_dir, "best")
    if resume and last_path.exists():
        ckpt = load_checkpoint(last_path, chash)
        try:
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            start_step, best = int(ckpt["step"]), float(ckpt["best_val_acc"])
        except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as e:
            raise CheckpointError(f"{last_path}: damaged checkpoint ({type(e).__name__}: "
                                  f"{str(e)[:300]})") from None
    if dist.is_main() and resume:
        rd.truncate_logs(run_dir, start_step)
    if dist.is_main() and start_step < total:
        # the weights are about to change: a completion marker or an evaluation of earlier
        # weights (fastmix eval / report on an unfinished run) no longer describes this run
        rd.drop_stale_results(run_dir)
    net = dist.wrap(model, rt.device)
    if rt.compile:  # train.compile: "auto" = on CUDA only (slower on the CPUs measured)
        net = torch.compile(net)
    step_fn = _make_step(net, opt, cfg, rt)

    def require_finite(step: int) -> None:
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            raise TrainingError(
                f"non-finite weights after step {step}; stopped without overwriting "
                f"{last_path}, the last good checkpoint is kept"
            )

    def checkpoint(step: int, best_acc: float, path: Path) -> None:
        require_finite(step)
        if dist.is_main():
            save_checkpoint(path, {"config_hash": chash, "variant": cfg["variant"]["name"],
                                   "epoch": step // spe, "step": step, "model": model.state_dict(),
                                   "optimizer": opt.state_dict(), "best_val_acc": best_acc})

    step = start_step
    t_all, n_all, final_acc = 0.0, 0, best
    bar = tqdm(total=total, initial=start_step, desc=f"train {cfg['variant']['name']}",
               unit="step", disable=not (progress and dist.is_main()), dynamic_ncols=True)
    model.train()
    for epoch in range(start_step // spe, epochs):
        skip = step - epoch * spe
        sums = np.zeros(4)  # loss, ce, oe, correct
        seen, nb, t0 = 0, 0, time.perf_counter()
        for i, (x, y, xo) in enumerate(loaders.epoch(epoch, skip=skip)):
            if step >= total or (stop_after_steps is not None and step >= stop_after_steps):
                break
            lr = lr_at(step, total, tc["lr"], tc["warmup_frac"])
            for g in opt.param_groups:
                g["lr"] = lr
            loss, ce, oe_term, correct = step_fn(x, y, xo)
            if not math.isfinite(loss):
                raise TrainingError(
                    f"non-finite loss ({loss}) at step {step} (epoch {epoch + 1}, "
                    f"batch {skip + i}); stopped; the last good checkpoint ({last_path}) is kept"
                )
            sums += (loss, ce, oe_term, correct)
            seen += len(y)
            nb += 1
            step += 1
            bar.update(1)
            if step % tc["log_every"] == 0:
                bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.3g}")
                if dist.is_main():
                    rd.append_step(run_dir, step, lr, loss, ce, oe_term)
            if tc["ckpt_every"] and step % tc["ckpt_every"] == 0 and step % spe:
                checkpoint(step, best, last_path)
        secs = time.perf_counter() - t0
        if stop_after_steps is not None and step >= stop_after_steps and step < total:
            bar.close()
            raise KeyboardInterrupt(f"stopped after {step} steps (simulated interruption)")
        if seen == 0:
            continue
        t_all, n_all = t_all + secs, n_all + seen
        final_acc = accuracy(model, val_x, val_y, rt)
        improved = final_acc > best
        best = max(best, final_acc)
        require_finite(step)
        # Order: the epoch's metrics row, best.pt, then last.pt, which marks the epoch done. A
        # crash before last.pt redoes the epoch on --resume (which drops the row again and
        # rewrites best.pt); the reverse order could record a best accuracy whose best.pt was
        # never written, or finish a run whose last metrics row is missing.
        if dist.is_main():
            ratio = 1 + (cfg["oe"]["ratio"] if cfg["oe"]["enabled"] else 0)
            row = {"epoch": epoch + 1, "step": step, "lr": f"{lr:.6g}",
                   "train_loss": f"{sums[0] / nb:.5f}", "train_ce": f"{sums[1] / nb:.5f}",
                   "train_oe": f"{sums[2] / nb:.5f}", "train_acc": f"{sums[3] / seen:.5f}",
                   "val_acc": f"{final_acc:.5f}", "seconds": f"{secs:.3f}",
                   "images_per_s": f"{seen / secs:.1f}",
                   "total_images_per_s": f"{seen * ratio / secs:.1f}"}
            rd.append_metrics(run_dir, row)
        if improved:
            checkpoint(step, best, best_path)
        checkpoint(step, best, last_path)
        if dist.is_main():
            bar.write(f"epoch {epoch + 1}/{epochs}: loss {row['train_loss']} "
                      f"train acc {sums[3] / seen:.4f} val acc {final_acc:.4f} "
                      f"({seen / secs:.0f} img/s)")
    bar.close()
    if dist.is_main() and step >= total:  # last: `fastmix run` skips only marked runs
        rd.write_done(run_dir, cfg, step, epochs, best)
    dist.barrier()
    return TrainResult(run_dir, cfg["variant"]["name"], epochs, step, best, final_acc, t_all,
                       n_all / t_all if t_all else 0.0)


def _make_step(net: torch.nn.Module, opt: torch.optim.Optimizer, cfg: Config, rt: Runtime):
    """One optimisation step: (x, y, outliers or None) -> (loss, ce, oe, n correct) floats."""
    lam, smooth = cfg["oe"]["lambda"], cfg["train"]["label_smoothing"]

    def step(x: Any, y: Any, xo: Any) -> tuple[float, float, float, float]:
        x = _to_input(x, rt)
        y = torch.as_tensor(y).reshape(-1).long().to(rt.device, non_blocking=True)
        n_in = x.shape[0]
        if xo is not None:
            x = torch.cat([x, _to_input(xo, rt)])
        with rt.autocast():
            logits = net(x)
        loss, ce, oe_term = oe_loss(logits, y, n_in, lam, smooth)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        correct = (logits[:n_in].argmax(1) == y).sum()
        vals = torch.stack([loss.detach(), ce.detach(), oe_term.detach(), correct.float()])
        # .cpu() waits for the step. On CUDA that wait also keeps FFCV's pinned batch buffers
        # safe: x / y / xo are views of slots FFCV refills a few batches later, and their
        # non_blocking copies must be done by then. Deferring this sync needs a .clone() first.
        return tuple(vals.float().cpu().tolist())

    return step
