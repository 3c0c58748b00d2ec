"""Checkpoints: atomic writes, safe loads (``weights_only=True``), refusal of foreign ones.

A checkpoint is a plain dict of tensors and primitives::

    {"format": 1, "config_hash": str, "variant": str, "epoch": int, "step": int,
     "model": state_dict, "optimizer": state_dict, "best_val_acc": float}

It is written to ``<name>.tmp-<pid>``, fsynced and renamed, so a crash never leaves a
half-written file under the real name. Loading never unpickles arbitrary objects.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from fastmix.config import Config, config_hash
from fastmix.errors import TrainingError
from fastmix.files import atomic_write

FORMAT = 1
_FIELDS = {
    "config_hash": str,
    "variant": str,
    "epoch": int,
    "step": int,
    "optimizer": dict,
    "best_val_acc": (float, int),
}


class CheckpointError(TrainingError):
    """A checkpoint is unreadable, truncated, or belongs to another config."""


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Write ``payload`` atomically to ``path``."""
    atomic_write(path, lambda f: torch.save({"format": FORMAT, **payload}, f))


def load_checkpoint(path: str | os.PathLike, expect_hash: str | None = None) -> dict[str, Any]:
    """Load a checkpoint safely; CheckpointError if unreadable or from another config."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, pickle.UnpicklingError) as e:
        raise CheckpointError(f"{path}: unreadable or truncated checkpoint ({e})") from None
    except Exception as e:  # a damaged pickle stream fails in many ways (IndexError, KeyError...)
        raise CheckpointError(
            f"{path}: unreadable or truncated checkpoint ({type(e).__name__}: {e})"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or "model" not in ckpt:
        raise CheckpointError(f"{path}: not a fastmix checkpoint (format {FORMAT})")
    bad = [
        k
        for k, types in _FIELDS.items()
        if k in ckpt and (not isinstance(ckpt[k], types) or isinstance(ckpt[k], bool))
    ]
    if not isinstance(ckpt["model"], dict) or not all(
        isinstance(v, torch.Tensor) for v in ckpt["model"].values()
    ):
        bad.append("model")
    if bad:
        raise CheckpointError(f"{path}: damaged checkpoint (malformed {', '.join(bad)})")
    if expect_hash is not None and ckpt.get("config_hash") != expect_hash:
        raise CheckpointError(
            f"{path}: checkpoint is from another config (hash {ckpt.get('config_hash')}, "
            f"this run's is {expect_hash}); start a new run directory or restore its config"
        )
    return ckpt


def load_run(run_dir: str | os.PathLike, which: str = "best") -> tuple[torch.nn.Module, Config]:
    """The trained model (eval mode, CPU, fp32) and config of a run directory."""
    from fastmix.train.models import build_model
    from fastmix.train.run_dir import checkpoint_path, read_run_config

    cfg = read_run_config(run_dir)
    ckpt = load_checkpoint(checkpoint_path(run_dir, which), config_hash(cfg))
    model = build_model(cfg["model"]["name"], cfg["model"]["width"])
    model.load_state_dict(ckpt["model"])
    return model.eval(), cfg
