"""The training loop users would otherwise write: the Outlier Exposure repository's way
(hendrycks/outlier-exposure ``MNIST/baseline.py`` / ``oe_scratch.py``): a torch ``DataLoader``
with per-sample augmentation in worker processes (``bench/baseline_loader.py``), eager, NCHW,
an outlier ``DataLoader`` zipped beside it, one variant after another.

Model, optimiser, schedule and OE loss come from the config (the ``oe_paper`` preset: the
paper's recipe), so accuracies compare with fastmix's; only the data path and the execution
differ.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from fastmix.bench.baseline_loader import PixMixBaseline, PlainBaseline, SaltPepperBaseline
from torch.utils.data import DataLoader

from fastmix.config import Config
from fastmix.runtime import usable_cores
from fastmix.train.models import build_model
from fastmix.train.oe import oe_loss
from fastmix.train.schedule import lr_at


def _dataset(
    kind: str, images: np.ndarray, labels: np.ndarray, bank: np.ndarray | None, cfg: Config
):
    a = cfg["augment"]
    if kind == "pixmix":
        return PixMixBaseline(
            images,
            labels,
            bank,
            a["pixmix_k"],
            a["pixmix_beta"],
            float(a["pixmix_severity"]),
            a["pixmix_all_ops"],
        )
    if kind == "sp":
        return SaltPepperBaseline(images, labels, a["sp_amount"])
    return PlainBaseline(images, labels)


def train_baseline(
    cfg: Config, betons: dict[str, Path], workers: int = 2, device: str | torch.device = "cpu"
) -> dict:
    """Train like the reference; return wall seconds, images/s and test accuracy.

    ``device``: where the model trains (the reference's ``.cuda()``; pinned batches there), so
    an end-to-end comparison runs both loops on the same device."""
    dev = torch.device(device)
    pin = dev.type == "cuda"
    from fastmix.converters.beton import read_beton

    t_start = time.perf_counter()
    x, y = read_beton(betons["train"])
    bank = read_beton(betons["mixing"])[0] if cfg["augment"]["kind"] == "pixmix" else None
    t = cfg["train"]
    torch.manual_seed(t["seed"])
    gen = torch.Generator().manual_seed(t["seed"])
    train_dl = DataLoader(
        _dataset(cfg["augment"]["kind"], x, y, bank, cfg),
        batch_size=t["batch_size"],
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        generator=gen,
        persistent_workers=True,
        pin_memory=pin,
    )
    out_dl = None
    if cfg["oe"]["enabled"]:
        ox, oy = read_beton(betons["outlier"])
        out_dl = DataLoader(
            PlainBaseline(ox, oy),
            batch_size=t["batch_size"] * cfg["oe"]["ratio"],
            shuffle=True,
            drop_last=True,
            num_workers=workers,
            persistent_workers=True,
            pin_memory=pin,
        )
    model = build_model(cfg["model"]["name"], cfg["model"]["width"]).to(dev)
    opt = torch.optim.SGD(
        model.parameters(),
        lr=t["lr"],
        momentum=t["momentum"],
        nesterov=True,
        weight_decay=t["weight_decay"],
    )
    torch.set_num_threads(len(usable_cores()))  # importing ffcv (read_beton) set it to 1
    total = t["epochs"] * len(train_dl)
    if t["max_steps"]:
        total = min(total, t["max_steps"])
    step, seen, t_train = 0, 0, 0.0
    for _epoch in range(t["epochs"]):
        t0 = time.perf_counter()
        outs = iter(out_dl) if out_dl is not None else None
        for xb, yb in train_dl:
            if step >= total:
                break
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total, t["lr"], t["schedule"], t["warmup_frac"], t["lr_min"])
            n_in = xb.shape[0]
            if outs is not None:
                try:
                    xo, _ = next(outs)
                except StopIteration:
                    outs = iter(out_dl)
                    xo, _ = next(outs)
                xb = torch.cat([xb, xo])
            xb = xb.to(dev, non_blocking=True)
            yb = yb.view(-1).long().to(dev, non_blocking=True)
            loss, _, _ = oe_loss(model(xb), yb, n_in, cfg["oe"]["lambda"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            seen += n_in
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t_train += time.perf_counter() - t0
    tx, ty = read_beton(betons["test"])
    model.eval()
    with torch.inference_mode():
        pred = torch.cat(
            [
                model(torch.from_numpy(tx[i : i + 1000]).to(dev).float().div(255).unsqueeze(1))
                .argmax(1)
                .cpu()
                for i in range(0, len(tx), 1000)
            ]
        ).numpy()
    return {
        "wall_s": time.perf_counter() - t_start,
        "train_s": t_train,
        "images_per_s": seen / t_train,
        "test_acc": float((pred == ty).mean()),
    }
