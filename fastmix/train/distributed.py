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


def backend_for(device: torch.device) -> str:
    """The process-group backend for a model on ``device``: nccl for CUDA, gloo for CPU (a CPU
    model on a GPU machine, ``train.device = "cpu"``, needs gloo too: nccl moves CUDA tensors
    only)."""
    return "nccl" if device.type == "cuda" else "gloo"


def init_from_env(device: torch.device) -> None:
    """Join the process group torchrun describes in the environment (once), with the backend
    for ``device`` (``fastmix.runtime.resolve_runtime``: ``cuda:LOCAL_RANK`` under torchrun)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or tdist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    tdist.init_process_group(backend_for(device))


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    if world_size() <= 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def barrier() -> None:
    if world_size() > 1:
        tdist.barrier()
