"""The CUDA path on a real GPU (marked ``cuda``; skipped without a CUDA device).

``make gpu-check`` runs these with ``FASTMIX_TEST_BETONS`` set to its converted data folder;
without it they use the betons converted from ../shared/data (``data_dir``).

* All six variants train in one ``train_runs`` job on ``cuda`` with what ``auto`` resolves to
  there: bf16 autocast, channels_last and ``torch.compile``.
* Evaluation in fp32 on CUDA gives the CPU's logits to float rounding (TF32 off).
* A job stopped by SIGTERM on CUDA resumes to the same number of steps with finite weights
  (cuDNN may choose non-deterministic kernels, so not bit-identical as on a CPU).
* ``train.device = "cuda:0"`` trains on GPU 0.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from fastmix.config import VARIANTS, load_config
from fastmix.runtime import resolve_runtime
from fastmix.train.checkpoint import load_checkpoint
from fastmix.train.preemption import Preempted
from fastmix.train.run import Run
from fastmix.train.trainer import RunRequest, train_runs

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
]

STEPS = 12  # smoke.toml's max_steps
# Evaluation: logit scores and one feature detector (features on the device), two OOD sets.
EVAL = {"scores": ["msp", "energy", "mahalanobis"], "ood_sets": ["fmnist_test", "gaussian_noise"]}


@pytest.fixture(scope="module")
def betons(request) -> Path:
    """``FASTMIX_TEST_BETONS`` (a converted data folder) or the suite's ``data_dir``."""
    given = os.environ.get("FASTMIX_TEST_BETONS")
    if given:
        return Path(given)
    return request.getfixturevalue("data_dir")


def _cfg(variant: str, betons: Path, **train):
    return load_config(
        variant,
        ["smoke"],
        [{"data": {"dir": str(betons)}}, {"eval": EVAL}, {"train": {"device": "cuda", **train}}],
    )


def _finite(ckpt: dict) -> bool:
    return all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def _record_steps(monkeypatch) -> list[tuple[str, torch.device, object]]:
    """Patch ``Run.train_step`` to note (run, parameters' device, runtime) at every step."""
    seen: list[tuple[str, torch.device, object]] = []
    original = Run.train_step

    def train_step(self, *args):
        seen.append((self.name, next(self.model.parameters()).device, self.rt))
        return original(self, *args)

    monkeypatch.setattr(Run, "train_step", train_step)
    return seen


@pytest.fixture(scope="module")
def six(betons, tmp_path_factory) -> tuple[Path, list, list]:
    """The six variants trained together on CUDA: (folder, results, steps seen)."""
    root = tmp_path_factory.mktemp("cuda-six")
    with pytest.MonkeyPatch.context() as mp:
        seen = _record_steps(mp)
        results = train_runs(
            [RunRequest(_cfg(v, betons), root / v) for v in VARIANTS], progress=False
        )
    return root, results, seen


def test_six_variants_train_on_cuda_with_bf16_and_compile(six):
    root, results, seen = six
    assert [r.steps for r in results] == [STEPS] * len(VARIANTS)
    assert sorted(name for name, _, _ in seen) == sorted(VARIANTS * STEPS)
    for _, device, rt in seen:
        assert device.type == "cuda"
        assert rt.dtype == torch.bfloat16 and rt.channels_last and rt.compile
    for v in VARIANTS:
        ckpt = load_checkpoint(root / v / "checkpoints" / "last.pt")
        assert ckpt["step"] == STEPS and _finite(ckpt), v
        assert json.loads((root / v / "done.json").read_text())["step"] == STEPS


def test_fp32_evaluation_on_cuda_gives_the_cpu_logits(six, betons, tmp_path):
    """The same checkpoint evaluated on CUDA and on the CPU, fp32: every set's logits agree
    to 1e-4, and so do the accuracies."""
    from fastmix.evaluate.evaluate import evaluate_run

    root, _, _ = six
    got = {}
    for device in ("cuda", "cpu"):
        run = shutil.copytree(
            root / "base_oe", tmp_path / device, ignore=shutil.ignore_patterns(".lock")
        )
        res = evaluate_run(run, betons, device=device, precision="fp32", progress=False)
        assert res["inference"]["device"] == device and res["inference"]["precision"] == "fp32"
        with np.load(run / "logits.npz") as z:
            got[device] = (res, {k: z[k] for k in z.files if k.startswith("logits/")})
    (res_gpu, z_gpu), (res_cpu, z_cpu) = got["cuda"], got["cpu"]
    assert sorted(z_gpu) == sorted(z_cpu) and len(z_gpu) >= 3
    for name, z in z_cpu.items():
        np.testing.assert_allclose(z_gpu[name], z, rtol=1e-4, atol=1e-4, err_msg=name)
    assert abs(res_gpu["summary"]["test_accuracy"] - res_cpu["summary"]["test_accuracy"]) <= 1e-3


def test_a_job_stopped_on_cuda_resumes_to_the_end(betons, tmp_path, monkeypatch):
    """SIGTERM at step 6 of a PixMix + OE run (the most state: PixMix draws, the outlier
    stream): checkpoint at step 6, exit code 143; the resumed run trains to the last step and
    its weights are finite."""
    cfg = _cfg("pixmix_oe", betons, ckpt_every=4, log_every=1)
    run = tmp_path / "pixmix_oe"
    original = Run.train_step

    def train_step(self, *args):
        original(self, *args)
        if self.step == 6:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(Run, "train_step", train_step)
    with pytest.raises(Preempted) as stopped:
        train_runs([RunRequest(cfg, run)], progress=False)
    monkeypatch.undo()
    assert stopped.value.exit_code == 143
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 6
    (result,) = train_runs([RunRequest(None, run, resume=True)], progress=False)
    assert result.steps == STEPS
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt["step"] == STEPS and _finite(ckpt)
    steps = [int(line.split(",")[0]) for line in (run / "steps.csv").read_text().splitlines()[1:]]
    assert steps == list(range(1, STEPS + 1))  # every step logged once, none lost or doubled


def test_device_cuda_0_trains_on_gpu_0(betons, tmp_path, monkeypatch):
    assert resolve_runtime("cuda:0").device == torch.device("cuda", 0)
    seen = _record_steps(monkeypatch)
    (result,) = train_runs(
        [RunRequest(_cfg("base", betons, device="cuda:0"), tmp_path / "b")], progress=False
    )
    assert result.steps == STEPS
    assert {device for _, device, _ in seen} == {torch.device("cuda", 0)}
    assert "cuda:0" in (tmp_path / "b" / "config.toml").read_text()
