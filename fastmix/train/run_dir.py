"""A run directory: the one place that knows its files, its lock and when a run is finished.

::

    <run>/config.toml            the resolved config (written once, when the run starts)
    <run>/metrics.csv            one row per epoch (METRICS_FIELDS)
    <run>/steps.csv              one row every train.log_every steps (STEPS_HEADER)
    <run>/train.log              one line per epoch (and what a preemption did)
    <run>/checkpoints/last.pt    resume point (each epoch, every train.ckpt_every steps, SIGTERM)
    <run>/checkpoints/best.pt    best validation accuracy so far
    <run>/done.json              written last, once every step is trained
    <run>/results.json           fastmix eval: every metric (removed when the weights change)
    <run>/logits.npz             fastmix eval: logits and labels per set
    <run>/features.npz           fastmix eval: penultimate features per set

Every file is written atomically (``fastmix.files.atomic_write``) or appended one line at a
time; one training process per run directory holds ``<run>/.lock``.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from fastmix.config import Config, config_differences, config_hash, dumps, read_config_file
from fastmix.errors import ConfigError
from fastmix.files import atomic_write, folder_lock, remove_temporaries

CONFIG_FILE = "config.toml"
METRICS_FILE = "metrics.csv"
STEPS_FILE = "steps.csv"
LOG_FILE = "train.log"
DONE_FILE = "done.json"
RESULTS_FILE = "results.json"
LOGITS_FILE = "logits.npz"
FEATURES_FILE = "features.npz"
CHECKPOINTS = "checkpoints"
EVAL_FILES = (RESULTS_FILE, LOGITS_FILE, FEATURES_FILE)

METRICS_FIELDS = [
    "epoch",
    "step",
    "lr",
    "train_loss",
    "train_ce",
    "train_oe",
    "train_acc",
    "val_acc",
    "seconds",
    "images_per_s",
    "total_images_per_s",
]
STEPS_HEADER = "step,lr,loss,ce,oe\n"


def checkpoint_path(run_dir: str | os.PathLike, which: str = "last") -> Path:
    """``<run>/checkpoints/<which>.pt`` (which: last | best)."""
    return Path(run_dir) / CHECKPOINTS / f"{which}.pt"


def run_dir_for(out: str | os.PathLike, cfg: Config) -> Path:
    """``<out>/<variant>-s<seed>``: where ``fastmix train`` and ``fastmix run`` put a run."""
    return Path(out) / f"{cfg['variant']['name']}-s{cfg['train']['seed']}"


def read_run_config(run_dir: str | os.PathLike) -> Config:
    """The resolved config a run was trained with (``<run>/config.toml``), validated."""
    return read_config_file(Path(run_dir) / CONFIG_FILE)


def read_done(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The completion marker (``{"config_hash", "step", "epochs", "best_val_acc"}``), or None
    when the run has not finished (or the marker is unreadable)."""
    try:
        done = json.loads((Path(run_dir) / DONE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return done if isinstance(done, dict) else None


def write_done(run_dir: Path, cfg: Config, step: int, epochs: int, best: float) -> None:
    """Mark the run finished: the last write of a training run (``fastmix run`` skips only
    marked runs)."""
    atomic_write(
        run_dir / DONE_FILE,
        json.dumps(
            {"config_hash": config_hash(cfg), "step": step, "epochs": epochs, "best_val_acc": best}
        )
        + "\n",
    )


def is_finished(run_dir: Path, cfg: Config) -> bool:
    """Whether ``run_dir`` holds a run of ``cfg`` that trained all its steps. ConfigError when
    the directory holds a run of another config: resuming or reporting it would pass its
    numbers off as this config's."""
    if not (run_dir / CONFIG_FILE).is_file():
        return False
    theirs = read_run_config(run_dir)
    if config_hash(theirs) != config_hash(cfg):
        diff = "; ".join(config_differences(theirs, cfg))
        raise ConfigError(
            f"{run_dir}: holds a run of another config ({diff}); choose another --out, or "
            "remove that directory to train it again"
        )
    done = read_done(run_dir)
    return done is not None and done.get("config_hash") == config_hash(cfg)


def cannot_create(run_dir: Path, e: OSError) -> ConfigError:
    return ConfigError(
        f"{run_dir}: cannot create the run directory ({e.strerror or e}: "
        f"{e.filename}); choose a writable --out"
    )


def lock(run_dir: Path, what: str = "fastmix train"):
    """Hold ``<run>/.lock``: one process writes a run directory at a time (a second training
    or evaluation of the same run is refused, the message naming ``what`` and the holder's
    pid), creating the directory if needed."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise cannot_create(run_dir, e) from None
    return folder_lock(run_dir, what)


def remove_leftovers(run_dir: Path) -> None:
    """Delete temporaries of killed training writes (config, CSVs, marker, checkpoints). Only
    with the lock held: then none of them can be a write in progress."""
    remove_temporaries(run_dir, (CONFIG_FILE, METRICS_FILE, STEPS_FILE, DONE_FILE))
    remove_temporaries(run_dir / CHECKPOINTS, ("*.pt",))


def prepare(cfg: Config, run_dir: Path) -> None:
    """Start a new run: ``config.toml`` and empty ``metrics.csv`` / ``steps.csv``. ConfigError if
    the directory already holds a run (``--resume`` continues one)."""
    if checkpoint_path(run_dir).exists():
        raise ConfigError(f"{run_dir}: already holds a run; pass --resume or choose another --out")
    try:
        (run_dir / CHECKPOINTS).mkdir(parents=True, exist_ok=True)
        atomic_write(run_dir / CONFIG_FILE, dumps(cfg))
        atomic_write(run_dir / METRICS_FILE, ",".join(METRICS_FIELDS) + "\r\n")
        atomic_write(run_dir / STEPS_FILE, STEPS_HEADER)
    except OSError as e:
        raise cannot_create(run_dir, e) from None


def truncate_logs(run_dir: Path, steps_done: int) -> None:
    """On resume, drop the log rows the checkpoint does not contain. Rows are written before
    the checkpoint of the same step, so a row belongs to it when its step <= ``steps_done`` (by
    step, not by epoch: a ``max_steps`` run ends inside an epoch, with a row)."""
    steps = run_dir / STEPS_FILE
    rows = steps.read_text().splitlines()[1:] if steps.is_file() else []
    keep = [r for r in rows if r and int(r.split(",")[0]) <= steps_done]
    atomic_write(steps, STEPS_HEADER + "".join(r + "\n" for r in keep))
    metrics = run_dir / METRICS_FILE
    kept = []
    if metrics.is_file():
        with open(metrics, newline="") as f:
            kept = [r for r in csv.DictReader(f) if int(r["step"]) <= steps_done]
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, METRICS_FIELDS)
    w.writeheader()
    w.writerows(kept)
    atomic_write(metrics, buf.getvalue())


def drop_stale_results(run_dir: Path) -> None:
    """The weights are about to change: a completion marker or an evaluation of earlier weights
    (``fastmix eval`` / ``report`` on an unfinished run) no longer describes this run."""
    for name in (DONE_FILE, *EVAL_FILES):
        (run_dir / name).unlink(missing_ok=True)


def append_metrics(run_dir: Path, row: dict[str, Any]) -> None:
    """Append one epoch's row to ``metrics.csv``."""
    with open(run_dir / METRICS_FILE, "a", newline="") as f:
        csv.DictWriter(f, METRICS_FIELDS).writerow(row)


def append_step(run_dir: Path, step: int, lr: float, loss: float, ce: float, oe: float) -> None:
    """Append one row to ``steps.csv``."""
    with open(run_dir / STEPS_FILE, "a") as f:
        f.write(f"{step},{lr:.6g},{loss:.6f},{ce:.6f},{oe:.6f}\n")


def append_log(run_dir: Path, line: str) -> None:
    """Append one line to ``train.log`` (the per-epoch log that stays with the run)."""
    with open(run_dir / LOG_FILE, "a") as f:
        f.write(line.rstrip("\n") + "\n")


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    """The rows of ``metrics.csv`` ([] when there is none yet)."""
    try:
        with open(run_dir / METRICS_FILE, newline="") as f:
            return list(csv.DictReader(f))
    except OSError:
        return []
