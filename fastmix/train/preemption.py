"""SIGTERM and SIGINT during training: stop at the next step boundary with a checkpoint.

Cluster schedulers (SLURM, Kubernetes, spot instances) send SIGTERM some time before they kill
a job. The first SIGTERM or SIGINT (Ctrl-C) only sets a flag; the training loop finishes the step
in flight, writes every run's checkpoint (atomically), says where, and exits with 128 + the
signal number (143 for SIGTERM, 130 for SIGINT). ``fastmix train --resume RUN`` or ``fastmix
run`` then continues bit-identically. A second signal ends the process at once with the
default action; whatever was already written stays valid (every file is written atomically).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator


class Preempted(Exception):
    """Training stopped on a signal after checkpointing; ``exit_code`` is 128 + signal."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class StopFlag:
    """Set by the first SIGTERM / SIGINT; ``signum`` says which."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __bool__(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""


@contextlib.contextmanager
def stop_on_signals(
    signums: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT),
) -> Iterator[StopFlag]:
    """Within the block, the first of ``signums`` sets the yielded flag and the second ends the
    process at once; the previous handlers come back afterwards. Outside the main thread (where
    Python cannot install handlers) the flag is never set."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame) -> None:
        if flag:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        flag.signum = signum

    previous = {s: signal.signal(s, handler) for s in signums}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
