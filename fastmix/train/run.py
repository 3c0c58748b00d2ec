"""One training run: its model, optimiser, dropout generator, step and epoch bookkeeping.

A ``Run`` owns everything that makes its weights: the model (built under ``torch.manual_seed(
derive_seed(train.seed, "init"))``), SGD with Nesterov momentum, its learning-rate schedule
(``fastmix.train.schedule``) and a ``torch.Generator`` for its dropout masks (seeded with
``derive_seed(train.seed, "dropout")``). Nothing is shared
with the other runs of the process, so a run gives the same weights whether it trains alone or
beside others, and after ``--resume`` (its checkpoint holds model, optimiser, generator state and
step). The loss is ``train.loss`` from the registry of ``fastmix.train.losses``: by default
cross-entropy, plus the Outlier Exposure term (``fastmix.train.oe``) on one forward pass over
``concat(in-distribution batch, outlier batch)`` when ``oe.enabled``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

from fastmix.augment.spec import Augmentation
from fastmix.config import Config, config_hash
from fastmix.data.inputs import to_model_input
from fastmix.errors import ConfigError, TrainingError
from fastmix.rng import derive_seed
from fastmix.runtime import Runtime
from fastmix.train import distributed as dist
from fastmix.train import run_dir as rd
from fastmix.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from fastmix.train.cuda_graph import GraphedStep, sgd_update
from fastmix.train.losses import loss_for
from fastmix.train.models import build_model, set_dropout_generator
from fastmix.train.schedule import lr_at


def require_betons(cfg: Config) -> dict[str, Path]:
    """Paths of the betons this config trains on; ConfigError naming any that is missing."""
    from fastmix.converters.build import load_manifest, manifest_beton_path

    data = Path(cfg["data"]["dir"])
    entries = load_manifest(data)["betons"] if data.is_dir() else {}
    need = {"train": cfg["data"]["train"], "val": cfg["data"]["val"]}
    if Augmentation.from_config(cfg["augment"]).spec.needs_bank:  # PixMix's mixing pictures
        need["mixing"] = cfg["data"]["mixing"]
    if cfg["oe"]["enabled"]:
        need["outlier"] = cfg["oe"]["source"]
    check_study(cfg, data, entries)
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


LABELLED_ROLES = ("train", "val", "test", "corrupted")  # catalog roles whose betons have classes


def check_study(cfg: Config, data: Path, entries: dict) -> None:
    """ConfigError, naming the setting, for a study that cannot mean what it says: a training
    or validation set without class labels, a test set from another family than the training
    set (unless ``data.family_shift`` says so), an Outlier Exposure source of the training
    set's family, a validation set that is the test set. Betons the manifest does not list are
    left to the missing-beton message."""
    d = cfg["data"]

    def entry(name: str) -> dict:
        return entries.get(name) or {}

    for key in ("train", "val"):
        e = entry(d[key])
        if e and e.get("role") not in LABELLED_ROLES:
            raise ConfigError(
                f"data.{key} = {d[key]!r}: {data}/manifest.json lists it as "
                f"{e.get('role')!r}, a set without class labels; train on a "
                "labelled set (e.g. mnist_train, fmnist_train)"
            )
    fam = entry(d["train"]).get("family")
    if d["val"] == d["test"]:
        raise ConfigError(
            f"data.val = data.test = {d['test']!r}: the validation set (best "
            "checkpoint, temperature) must not be the test set"
        )
    test_fam = entry(d["test"]).get("family")
    if fam and test_fam and test_fam != fam and not d["family_shift"]:
        raise ConfigError(
            f"data.test = {d['test']!r} is {test_fam}, data.train = "
            f"{d['train']!r} is {fam}; set data.family_shift = true to test "
            "across families"
        )
    if cfg["oe"]["enabled"] and fam and entry(cfg["oe"]["source"]).get("family") == fam:
        raise ConfigError(
            f"oe.source = {cfg['oe']['source']!r} is the training set's family "
            f"({fam}): Outlier Exposure needs outliers from another distribution"
        )


@torch.inference_mode()
def accuracy(
    model: torch.nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    rt: Runtime,
    batch_size: int = 1000,
) -> float:
    """Top-1 accuracy of ``model`` (eval mode, the run's precision) on uint8 images."""
    was = model.training
    model.eval()
    correct = 0
    for i in range(0, len(images), batch_size):
        x = to_model_input(images[i : i + batch_size], rt.device, rt.channels_last)
        with rt.autocast():
            pred = model(x).argmax(1).cpu().numpy()
        correct += int((pred == labels[i : i + batch_size]).sum())
    model.train(was)
    return correct / len(images)


class Run:
    """One model in training (module docstring). ``step`` is the number of optimiser steps
    done; ``total`` the number to do (``train.epochs`` x steps per epoch, capped by
    ``train.max_steps``)."""

    def __init__(
        self,
        cfg: Config,
        run_dir: Path,
        rt: Runtime,
        betons: dict[str, Path],
        steps_per_epoch: int,
        resume: bool,
    ) -> None:
        self.cfg, self.run_dir, self.rt, self.betons = cfg, run_dir, rt, betons
        self.name = run_dir.name
        tc = cfg["train"]
        self.augmentation = Augmentation.from_config(cfg["augment"])
        self.hash = config_hash(cfg)
        self.loss_fn = loss_for(cfg)  # fastmix.train.losses
        self.spe = steps_per_epoch
        self.total = tc["epochs"] * steps_per_epoch
        if tc["max_steps"]:
            self.total = min(self.total, tc["max_steps"])
        self.epochs = math.ceil(self.total / steps_per_epoch)
        torch.manual_seed(derive_seed(tc["seed"], "init"))
        self.model = build_model(cfg["model"]["name"], cfg["model"]["width"]).to(rt.device)
        if rt.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        gen_device = rt.device if rt.device.type == "cuda" else "cpu"
        self.generator = torch.Generator(gen_device).manual_seed(derive_seed(tc["seed"], "dropout"))
        set_dropout_generator(self.model, self.generator)
        decay = [p for p in self.model.parameters() if p.ndim > 1]
        no_decay = [p for p in self.model.parameters() if p.ndim <= 1]
        self.opt = torch.optim.SGD(
            [
                {"params": decay, "weight_decay": tc["weight_decay"]},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=tc["lr"],
            momentum=tc["momentum"],
            nesterov=tc["momentum"] > 0,
        )
        self.step, self.best, self.val_acc, self.last_lr = 0, -1.0, -1.0, 0.0
        if resume and rd.checkpoint_path(run_dir).exists():
            self._load(rd.checkpoint_path(run_dir))
        if resume and dist.is_main():
            rd.truncate_logs(run_dir, self.step)  # rows after the checkpoint are redone
            if self.step < self.total:  # the weights will change: earlier results are stale
                rd.drop_stale_results(run_dir)
        self.net = dist.wrap(self.model, rt.device)
        if rt.compile:
            self.net = torch.compile(self.net)
        self.graphed = (
            GraphedStep(
                self.model, self.opt, self.generator, self._graph_body, rt.device, rt.channels_last
            )
            if rt.cuda_graphs
            else None
        )
        self.seconds, self.images = 0.0, 0
        self._new_epoch()

    # ---- state

    def _load(self, path: Path) -> None:
        ckpt = load_checkpoint(path, self.hash)
        try:
            self.model.load_state_dict(ckpt["model"])
            self.opt.load_state_dict(ckpt["optimizer"])
            self.step, self.best = int(ckpt["step"]), float(ckpt["best_val_acc"])
            if "dropout_rng" in ckpt:
                self._set_dropout_state(ckpt["dropout_rng"].to(torch.uint8).cpu())
        except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as e:
            raise CheckpointError(
                f"{path}: damaged checkpoint ({type(e).__name__}: {str(e)[:300]})"
            ) from None

    def _set_dropout_state(self, state: torch.Tensor) -> None:
        """The checkpoint's dropout generator state; a state of the other device kind (a run
        started on CPU and resumed on CUDA, or back: their generators differ in size) re-seeds
        the generator from ``derive_seed(seed, "dropout", step)`` instead, so the resume works,
        with masks from there on that an uninterrupted run on one device would not draw."""
        if state.numel() == self.generator.get_state().numel():
            self.generator.set_state(state)
            return
        self.generator.manual_seed(derive_seed(self.cfg["train"]["seed"], "dropout", self.step))

    def _require_finite(self) -> None:
        if not all(torch.isfinite(p).all() for p in self.model.parameters()):
            raise TrainingError(
                f"{self.name}: non-finite weights after step {self.step}; stopped without "
                f"overwriting {rd.checkpoint_path(self.run_dir)}, the last good checkpoint"
            )

    def save(self, which: str = "last") -> Path:
        """Write ``checkpoints/<which>.pt`` (atomically) for the current step."""
        self._require_finite()
        path = rd.checkpoint_path(self.run_dir, which)
        if dist.is_main():
            save_checkpoint(
                path,
                {
                    "config_hash": self.hash,
                    "variant": self.cfg["variant"]["name"],
                    "epoch": self.step // self.spe,
                    "step": self.step,
                    "model": self.model.state_dict(),
                    "optimizer": self.opt.state_dict(),
                    "dropout_rng": self.generator.get_state(),
                    "best_val_acc": self.best,
                },
            )
        return path

    @property
    def done(self) -> bool:
        return self.step >= self.total

    @property
    def lr(self) -> float:
        tc = self.cfg["train"]
        return lr_at(
            self.step, self.total, tc["lr"], tc["schedule"], tc["warmup_frac"], tc["lr_min"]
        )

    # ---- one optimisation step

    def train_step(self, x: torch.Tensor, y: torch.Tensor, xo: torch.Tensor | None) -> None:
        """One SGD step on in-distribution images ``x`` (B, 1, H, W), labels ``y`` and outliers
        ``xo`` (or None); records the loss terms for the epoch's row."""
        rt, lr = self.rt, self.lr
        self.last_lr = lr
        n_out = 0 if xo is None else xo.shape[0]
        if self.graphed is not None and self.graphed.fits(x.shape[0], x.shape[0] + n_out):
            return self._graphed_train_step(x, y, xo, lr)
        for g in self.opt.param_groups:
            g["lr"] = lr
        t0 = time.perf_counter()
        xin = to_model_input(x, rt.device, rt.channels_last)
        y = y.reshape(-1).long().to(rt.device, non_blocking=True)
        n_in = xin.shape[0]
        if xo is not None:
            xin = torch.cat([xin, to_model_input(xo, rt.device, rt.channels_last)])
        with rt.autocast():
            logits = self.net(xin)
        loss, ce, oe_term = self.loss_fn(logits, y, n_in, self.cfg)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        correct = (logits[:n_in].detach().argmax(1) == y).sum()
        vals = torch.stack([loss.detach(), ce.detach(), oe_term.detach(), correct.float()])
        # .cpu() waits for the step. On CUDA that wait also keeps FFCV's pinned batch buffers
        # safe: x / y / xo are views of slots FFCV refills a few batches later.
        loss_f, ce_f, oe_f, corr = vals.float().cpu().tolist()
        if not math.isfinite(loss_f):
            raise TrainingError(
                f"{self.name}: non-finite loss ({loss_f}) at step {self.step} (epoch "
                f"{self.step // self.spe + 1}); stopped; the last good checkpoint "
                f"({rd.checkpoint_path(self.run_dir)}) is kept"
            )
        self.step += 1
        self.sums += (loss_f, ce_f, oe_f, corr)
        self.seen += n_in
        self.nb += 1
        self.epoch_seconds += time.perf_counter() - t0
        if self.step % self.cfg["train"]["log_every"] == 0 and dist.is_main():
            rd.append_step(self.run_dir, self.step, lr, loss_f, ce_f, oe_f)

    def _graph_body(self, x: torch.Tensor, y: torch.Tensor, n_in: int) -> torch.Tensor:
        """The step ``GraphedStep`` captures: forward (autocast without its cast cache), loss,
        backward, ``sgd_update``; returns the float32 (4,) loss terms."""
        rt = self.rt
        with torch.autocast(
            rt.device.type,
            dtype=rt.dtype or torch.bfloat16,
            enabled=rt.autocast_enabled,
            cache_enabled=False,
        ):
            logits = self.model(x)
        loss, ce, oe_term = self.loss_fn(logits, y, n_in, self.cfg)
        loss.backward()
        sgd_update(self.opt, self.graphed.lr)
        correct = (logits[:n_in].detach().argmax(1) == y).sum()
        return torch.stack([loss.detach(), ce.detach(), oe_term.detach(), correct.float()]).float()

    def _graphed_train_step(self, x, y, xo, lr: float) -> None:
        """``train_step`` as one graph replay; the loss terms stay on the GPU and are read (one
        synchronisation) only where a log row or the epoch's end needs them."""
        t0 = time.perf_counter()
        self.graphed.step(x, y, xo, lr)
        self.step += 1
        self.seen += x.shape[0]
        self.nb += 1
        log_row = self.step % self.cfg["train"]["log_every"] == 0
        if log_row or self.at_epoch_end or self.wants_mid_epoch_checkpoint:
            sums, (loss_f, ce_f, oe_f, _) = self.graphed.drain()
            if not all(map(math.isfinite, sums)):
                raise TrainingError(
                    f"{self.name}: non-finite loss by step {self.step} (epoch "
                    f"{(self.step - 1) // self.spe + 1}); stopped; the last good checkpoint "
                    f"({rd.checkpoint_path(self.run_dir)}) is kept"
                )
            self.sums += sums
            if log_row and dist.is_main():
                rd.append_step(self.run_dir, self.step, lr, loss_f, ce_f, oe_f)
        self.epoch_seconds += time.perf_counter() - t0

    # ---- epoch and run boundaries

    def _new_epoch(self) -> None:
        self.sums = np.zeros(4)  # loss, ce, oe, correct
        self.seen, self.nb, self.epoch_seconds = 0, 0, 0.0

    @property
    def at_epoch_end(self) -> bool:
        return self.seen > 0 and (self.step % self.spe == 0 or self.done)

    @property
    def wants_mid_epoch_checkpoint(self) -> bool:
        every = self.cfg["train"]["ckpt_every"]
        return bool(every) and self.step % every == 0 and self.step % self.spe != 0

    def end_epoch(self, val: tuple[np.ndarray, np.ndarray]) -> str:
        """Validation accuracy, the epoch's metrics row, best.pt, then last.pt; returns the log
        line. The order matters: a crash before last.pt redoes the epoch on ``--resume``
        (which drops the row again and rewrites best.pt); the reverse order could record a best
        accuracy whose best.pt was never written."""
        self.val_acc = accuracy(self.model, val[0], val[1], self.rt)
        improved = self.val_acc > self.best
        self.best = max(self.best, self.val_acc)
        self._require_finite()
        epoch, secs = math.ceil(self.step / self.spe), self.epoch_seconds
        seen, nb = self.seen, self.nb
        ratio = 1 + (self.cfg["oe"]["ratio"] if self.cfg["oe"]["enabled"] else 0)
        if dist.is_main():
            rd.append_metrics(
                self.run_dir,
                {
                    "epoch": epoch,
                    "step": self.step,
                    "lr": f"{self.last_lr:.6g}",
                    "train_loss": f"{self.sums[0] / nb:.5f}",
                    "train_ce": f"{self.sums[1] / nb:.5f}",
                    "train_oe": f"{self.sums[2] / nb:.5f}",
                    "train_acc": f"{self.sums[3] / seen:.5f}",
                    "val_acc": f"{self.val_acc:.5f}",
                    "seconds": f"{secs:.3f}",
                    "images_per_s": f"{seen / secs:.1f}",
                    "total_images_per_s": f"{seen * ratio / secs:.1f}",
                },
            )
        if improved:
            self.save("best")
        self.save("last")
        self.seconds += secs
        self.images += seen
        line = (
            f"{self.name} epoch {epoch}/{self.epochs}: loss {self.sums[0] / nb:.4f} train acc "
            f"{self.sums[3] / seen:.4f} val acc {self.val_acc:.4f} ({seen / secs:.0f} img/s)"
        )
        if dist.is_main():
            rd.append_log(self.run_dir, line)
        self._new_epoch()
        return line
