"""Where and how the model runs: device, precision, memory format, compile, and the cores.

``auto`` means: bf16 autocast on CUDA and on CPUs with bf16 instructions (AMX-bf16 or
AVX512-BF16, which oneDNN's convolutions use); fp32 elsewhere. channels_last memory on CUDA and
on every CPU (oneDNN's convolutions prefer it). CUDA graphs on CUDA (``fastmix.train.cuda_graph``:
a step's ~400 kernel launches become one replay). ``torch.compile`` on CUDA when graphs are off:
on a CPU the compiled step of these small CNNs is no faster than the eager one (``fastmix bench
train`` measures both), its first step pays the compilation, and it rounds differently from eager.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import torch

from fastmix.errors import ConfigError


@lru_cache(maxsize=1)
def cpu_bf16_flags() -> tuple[str, ...]:
    """The bf16 instruction sets /proc/cpuinfo lists (``amx_bf16``, ``avx512_bf16``; Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((ln.split(":", 1)[1].split() for ln in f if ln.startswith("flags")), [])
    except OSError:
        return ()
    return tuple(f for f in ("amx_bf16", "avx512_bf16") if f in flags)


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    dtype: torch.dtype | None  # autocast dtype, None = fp32
    channels_last: bool
    compile: bool
    cuda_graphs: bool = False

    @property
    def autocast_enabled(self) -> bool:
        return self.dtype is not None

    def autocast(self):
        return torch.autocast(
            self.device.type, dtype=self.dtype or torch.bfloat16, enabled=self.autocast_enabled
        )


def check_device(device: str) -> torch.device:
    """``device`` ("cpu", "cuda", "cuda:N") as a torch.device; ConfigError when this machine
    has no such device (no CUDA, or fewer GPUs than N + 1), before anything is written."""
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {device!r}: CUDA is not available here (torch {torch.__version__}); "
                "use 'auto' or 'cpu'"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {device!r}: this machine has {torch.cuda.device_count()} GPU(s)"
            )
    return dev


def resolve_runtime(
    device: str = "auto",
    precision: str = "auto",
    channels_last: str = "auto",
    compile: str = "auto",
    cuda_graphs: str = "auto",
) -> Runtime:
    """Turn the config's auto/on/off choices into concrete settings for this machine.

    Under ``torchrun`` (WORLD_SIZE > 1) a CUDA device becomes ``cuda:LOCAL_RANK``: one GPU per
    process, whatever index the config names (every rank on one GPU would make NCCL fail)."""
    if device == "auto":
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        dev = check_device(device)
    if dev.type == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    fast = dev.type == "cuda" or bool(cpu_bf16_flags())
    dtype = torch.bfloat16 if precision == "bf16" or (precision == "auto" and fast) else None
    cl = channels_last != "off"
    if cuda_graphs == "on" and dev.type != "cuda":
        raise ConfigError(f"train.cuda_graphs = on needs a CUDA device; the device is {dev}")
    # DDP's gradient all-reduce is not captured: graphs are for one-process training.
    single = int(os.environ.get("WORLD_SIZE", "1")) == 1
    graphs = dev.type == "cuda" and cuda_graphs != "off" and single
    comp = compile == "on" or (compile == "auto" and dev.type == "cuda" and not graphs)
    return Runtime(dev, dtype, cl, comp, graphs)


def usable_cores() -> list[int]:
    """The cores this process may run on: its affinity mask (taskset, a cgroup, pinning by a
    parent), which Numba sizes its thread pool by; all cores where there is no mask (not Linux)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:
        return list(range(os.cpu_count() or 1))


def default_torch_threads() -> int:
    """All usable cores, shared evenly among the processes torchrun starts on this machine."""
    cpus = len(usable_cores())
    return max(1, cpus // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


def set_torch_threads(n: int | None = None) -> int:
    """Set torch's intra-op thread count to ``n`` (default ``default_torch_threads()``) and return
    it. Needed because ffcv lowers it: ``import ffcv`` sets it to 1, and every Loader
    construction and epoch start set it to the loader's ``num_workers``."""
    n = default_torch_threads() if n is None else int(n)
    if n < 1:
        raise ConfigError(f"torch threads must be >= 1, got {n}")
    torch.set_num_threads(n)
    return n


class Workers:
    """``n`` threads that each run their calls on ``threads`` torch threads (``n = 1``: the
    calls run in the calling thread, on its torch threads). A small CNN's step or forward pass
    does not spread over two cores nearly as well as two of them side by side do, and one
    torch thread per call keeps a result's float rounding independent of what runs beside it."""

    def __init__(self, n: int, threads: int = 1) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.pool = (
            ThreadPoolExecutor(n, initializer=set_torch_threads, initargs=(threads,))
            if n > 1
            else None
        )

    def map(self, fn, calls: list[tuple], on_done=None) -> list:
        """``[fn(*args) for args in calls]``, spread over the workers; ``on_done(result)`` is
        called in this thread as each call finishes."""
        if self.pool is None:
            out = []
            for args in calls:
                out.append(fn(*args))
                if on_done is not None:
                    on_done(out[-1])
            return out
        from concurrent.futures import as_completed

        futures = [self.pool.submit(fn, *args) for args in calls]
        if on_done is not None:
            for f in as_completed(futures):
                on_done(f.result())
        return [f.result() for f in futures]

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
