"""SIGTERM during a real ``fastmix eval``: nothing a later run trusts, and a re-run finishes.

``results.json`` is what every later step trusts (``fastmix report`` and ``fastmix run``
evaluate a run again when it is missing); it is written last, after ``logits.npz`` and
``features.npz``, and the old one is removed before those are rewritten. So after a SIGTERM
the run directory may hold a ``logits.npz`` or ``*.tmp-<pid>`` leftovers, but a
``results.json`` only if it is whole and agrees with the files beside it. Two moments are
tested on real subprocesses, signalled as a scheduler does (the whole process group):

* during inference, in a run directory never evaluated;
* the moment the first temporary file of the write phase appears, in a run directory that
  holds a complete evaluation with another ``--seed`` (so a stale ``results.json`` beside new
  files would show).

Each time a re-run exits 0, writes a results.json for its own seed and leaves no ``*.tmp-*``;
its logits equal the earlier complete evaluation's (the weights did not change). The data
folder holds only the sets this evaluation needs, so each evaluation takes seconds.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fastmix.config import load_config
from fastmix.files import TMP_MARK
from fastmix.train.run_dir import FEATURES_FILE, LOGITS_FILE, RESULTS_FILE
from fastmix.train.trainer import train
from tests.conftest import kill_group, link_betons, popen_logged

pytestmark = pytest.mark.slow

# A small, quick model and evaluation that still writes all three files.
SETTINGS = {
    "train": {"device": "cpu"},
    "model": {"name": "lenet", "width": 4},
    "eval": {"scores": ["msp", "energy"], "features": True, "ood_sets": ["gaussian_noise"]},
}
SETS = ("mnist_train", "mnist_val", "mnist_test", "gaussian_noise")


def _eval_cmd(run: Path, data: Path, seed: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "fastmix",
        "eval",
        str(run),
        "--data",
        str(data),
        "--device",
        "cpu",
        "--seed",
        str(seed),
        "--no-progress",
    ]


def _signal_group(proc: subprocess.Popen) -> int:
    """SIGTERM the evaluation's process group; its exit status (it must not be 0)."""
    assert proc.poll() is None, "the evaluation finished before the signal"
    os.killpg(proc.pid, signal.SIGTERM)
    code = proc.wait(timeout=120)
    assert code != 0, "the SIGTERMed evaluation reported success"
    return code


def _assert_nothing_untrustworthy(run: Path, seeds: set[int]) -> None:
    """A results.json, if any, is whole, for one of ``seeds``, and its logits.npz and
    features.npz are there, hold every set it names and the training subset of its seed."""
    path = run / RESULTS_FILE
    if not path.exists():
        return
    results = json.loads(path.read_text())  # whole: written atomically
    assert results["eval_seed"] in seeds
    with np.load(run / LOGITS_FILE) as z:
        assert {f"logits/{n}" for n in results["data"]} <= set(z.files)
    with np.load(run / FEATURES_FILE) as f:
        idx = f["indices/train"]
    assert len(idx) == results["features"]["n_train"]


def _logits(run: Path) -> dict[str, np.ndarray]:
    with np.load(run / LOGITS_FILE) as z:
        return {k: z[k] for k in z.files}


def _rerun_finishes(run: Path, data: Path, seed: int, log: Path) -> dict:
    """A re-run of the evaluation: exit 0, results.json for ``seed``, no temporaries."""
    proc = popen_logged(_eval_cmd(run, data, seed), log)
    try:
        assert proc.wait(timeout=600) == 0, log.read_text()[-3000:]
    finally:
        kill_group(proc)
    results = json.loads((run / RESULTS_FILE).read_text())
    assert results["eval_seed"] == seed
    assert not [p.name for p in run.rglob(f"*{TMP_MARK}*")], "temporaries left after a re-run"
    _assert_nothing_untrustworthy(run, {seed})
    return results


def _wait_for_line(proc: subprocess.Popen, log: Path, text: str) -> None:
    while proc.poll() is None and text not in log.read_text():
        time.sleep(0.02)


def _wait_for_temporary(proc: subprocess.Popen, run: Path) -> str | None:
    """Poll until the evaluation's first ``*.tmp-<pid>`` appears; its name (None: it ended)."""
    suffix = f"{TMP_MARK}{proc.pid}"
    while proc.poll() is None:
        for e in os.scandir(run):
            if e.name.endswith(suffix):
                return e.name
        time.sleep(0.002)
    return None


def test_sigterm_during_eval_leaves_nothing_trusted_and_a_rerun_finishes(data_dir, tmp_path):
    data = link_betons(data_dir, tmp_path / "data", SETS)
    run, log = tmp_path / "base-s0", tmp_path / "log.txt"
    train(
        load_config("base", ["smoke"], [{"data": {"dir": str(data)}}, SETTINGS]),
        run,
        progress=False,
    )

    # 1. During inference, never evaluated before; then a complete evaluation (seed 1).
    proc = popen_logged(_eval_cmd(run, data, 1), log)
    try:
        _wait_for_line(proc, log, "evaluating ")
        time.sleep(random.uniform(0.2, 1.0))  # sets being read or logits in progress
        code = _signal_group(proc)
    finally:
        kill_group(proc)
    print(
        f"SIGTERM during inference: exit status {code}; left "
        f"{sorted(p.name for p in run.iterdir())}"
    )
    assert not (run / RESULTS_FILE).exists()
    before = _rerun_finishes(run, data, 1, log)
    old_logits = _logits(run)

    # 2. In the write phase of a re-evaluation with seed 0; then that evaluation again.
    proc = popen_logged(_eval_cmd(run, data, 0), log)
    try:
        first = _wait_for_temporary(proc, run)
        assert first is not None, "no temporary seen:\n" + log.read_text()[-3000:]
        code = _signal_group(proc)
    finally:
        kill_group(proc)
    print(
        f"SIGTERM once {first} appeared: exit status {code}; left "
        f"{sorted(p.name for p in run.iterdir())}"
    )
    _assert_nothing_untrustworthy(run, {0})  # never the older seed-1 results beside new files
    after = _rerun_finishes(run, data, 0, log)
    for name, z in _logits(run).items():
        np.testing.assert_array_equal(z, old_logits[name], err_msg=name)
    assert after["summary"]["test_accuracy"] == before["summary"]["test_accuracy"]
