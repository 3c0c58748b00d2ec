"""DDP under ``torchrun`` (gloo on CPU, nccl on CUDA); a no-op in a single process.

``torchrun --nproc_per_node=N -m fastmix train ...`` sets WORLD_SIZE/RANK/LOCAL_RANK; each
process then reads its shard through the FFCV loader's ``distributed=True`` and gradients are
averaged by DistributedDataParallel. ``train.batch_size`` is per process. Only rank 0 writes
files.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as tdist


def world_size() -> int:
    return tdist.get_world_size() if tdist.is_available() and tdist.is_initialized() else 1


def rank() -> int:
    return tdist.get_rank() if tdist.is_available() and tdist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def init_from_env() -> None:
    """Join the process group torchrun describes in the environment (once)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or tdist.is_initialized():
        return
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    tdist.init_process_group(backend)


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    if world_size() <= 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def barrier() -> None:
    if world_size() > 1:
        tdist.barrier()
