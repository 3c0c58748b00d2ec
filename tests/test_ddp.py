"""DDP on CPU: torchrun, 2 processes, gloo, the FFCV loader's distributed=True, small data."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fastmix.train.checkpoint import load_run


@pytest.mark.slow
def test_torchrun_two_processes_gloo(data_dir, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [
        str(torchrun),
        "--nproc_per_node=2",
        "-m",
        "fastmix",
        "train",
        "--variant",
        "sp_oe",
        "--config",
        "smoke",
        "--set",
        "train.max_steps=6",
        "--set",
        "data.num_workers=1",
        "--set",
        "train.log_every=1",
        "--data",
        str(data_dir),
        "--out",
        str(tmp_path),
        "--no-progress",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # only rank 0 reports and writes
    assert proc.stdout.count("wall time") == 1
    run = tmp_path / "sp_oe-s0"
    with open(run / "steps.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    model, cfg = load_run(run)
    assert cfg["augment"]["kind"] == "sp" and cfg["oe"]["enabled"]
    assert torch.isfinite(model(torch.rand(2, 1, 28, 28))).all()


def test_process_group_backend_follows_the_model_device():
    """gloo for a CPU model even on a GPU machine (``train.device = "cpu"`` under torchrun; the
    backend used to follow ``torch.cuda.is_available()``, and nccl cannot move CPU tensors),
    nccl for a CUDA model."""
    from fastmix.train.distributed import backend_for

    assert backend_for(torch.device("cpu")) == "gloo"
    assert backend_for(torch.device("cuda")) == "nccl"
    assert backend_for(torch.device("cuda", 1)) == "nccl"
