"""The CUDA path on a real GPU (marked ``cuda``; skipped without a CUDA device).

``make gpu-check`` runs these with ``FASTMIX_TEST_BETONS`` set to its converted data folder;
without it they use the betons converted from ../shared/data (``data_dir``).

* All six variants train in one ``train_runs`` job on ``cuda`` with what ``auto`` resolves to
  there: bf16 autocast, channels_last and CUDA graphs; one run with graphs off and
  ``torch.compile`` on.
* A graphed step gives the eager step's weights and momentum (fp32, dropout off), and each
  replay draws new dropout masks from the run's generator.
* A run started on the CPU resumes on CUDA (their dropout generators differ in kind).
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
from fastmix.runtime import default_torch_threads, resolve_runtime
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


def test_six_variants_train_on_cuda_with_bf16_and_graphs(six):
    root, results, seen = six
    assert [r.steps for r in results] == [STEPS] * len(VARIANTS)
    assert sorted(name for name, _, _ in seen) == sorted(VARIANTS * STEPS)
    for _, device, rt in seen:
        assert device.type == "cuda"
        assert rt.dtype == torch.bfloat16 and rt.channels_last and rt.cuda_graphs
        assert not rt.compile
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
        assert torch.get_num_threads() == default_torch_threads()  # KNN etc. on every core
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


def test_a_run_with_graphs_off_trains_eagerly(betons, tmp_path):
    cfg = _cfg("base", betons, cuda_graphs="off", compile="off")
    assert resolve_runtime("cuda", "auto", "auto", "auto", "off").compile  # auto: compiled
    (result,) = train_runs([RunRequest(cfg, tmp_path / "b")], progress=False)
    assert result.steps == STEPS
    assert _finite(load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt"))


def _twin_runs(betons: Path, tmp_path: Path, variant: str, dropout: bool):
    """The same run built twice (same seed: same initial weights), graphed and eager, fp32."""
    runs = []
    for graphs in ("on", "off"):
        cfg = _cfg(
            variant, betons, precision="fp32", compile="off", cuda_graphs=graphs, log_every=10**9
        )
        rt = resolve_runtime("cuda", "fp32", "auto", "off", graphs)
        run = Run(cfg, tmp_path / graphs, rt, {}, 10**6, resume=False)
        if not dropout:
            for m in run.model.modules():
                if hasattr(m, "generator") and hasattr(m, "p"):
                    m.p = 0.0
        runs.append(run)
    return runs


def _batches(n: int, with_outliers: bool):
    g = torch.Generator().manual_seed(0)
    for _ in range(n):
        x = torch.rand(128, 1, 28, 28, generator=g)
        y = torch.randint(0, 10, (128,), generator=g)
        xo = torch.rand(128, 1, 28, 28, generator=g) if with_outliers else None
        yield x, y, xo


def test_graphed_steps_give_the_eager_steps_weights(betons, tmp_path):
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    graphed, eager = _twin_runs(betons, tmp_path, "base_oe", dropout=False)
    assert graphed.graphed is not None and eager.graphed is None
    for x, y, xo in _batches(10, with_outliers=True):
        graphed.train_step(x, y, xo)
        eager.train_step(x, y, xo)
    torch.cuda.synchronize()
    for (name, a), b in zip(
        graphed.model.state_dict().items(), eager.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
    for p, q in zip(graphed.model.parameters(), eager.model.parameters(), strict=True):
        buf_a = graphed.opt.state[p]["momentum_buffer"]
        buf_b = eager.opt.state[q]["momentum_buffer"]
        torch.testing.assert_close(buf_a, buf_b, rtol=1e-4, atol=1e-5)
    assert graphed.step == eager.step == 10
    sums, _ = graphed.graphed.drain()
    assert abs(sums[0] / 10 - eager.sums[0] / 10) < 1e-3  # the epoch's mean loss, both ways


def test_each_replay_draws_new_dropout_masks(betons, tmp_path):
    graphed, _ = _twin_runs(betons, tmp_path, "base", dropout=True)
    states = []
    for x, y, xo in _batches(4, with_outliers=False):
        graphed.train_step(x, y, xo)
        torch.cuda.synchronize()
        states.append(bytes(graphed.generator.get_state().tolist()))
    assert len(set(states)) == 4  # the Philox offset moved at every replay


def test_a_run_started_on_cpu_resumes_on_cuda(betons, tmp_path):
    """As with ``train.device = "auto"`` on a CPU machine, then on a GPU machine: the same
    config hash, a CPU generator state in the checkpoint, resumed on CUDA to the last step."""
    from fastmix.config import config_hash
    from fastmix.train.checkpoint import save_checkpoint
    from fastmix.train.run_dir import read_run_config

    run = tmp_path / "base"
    train_runs([RunRequest(_cfg("base", betons, device="cpu", max_steps=6), run)], progress=False)
    path = run / "checkpoints" / "last.pt"
    ckpt = load_checkpoint(path)
    assert ckpt["step"] == 6 and ckpt["dropout_rng"].numel() > 16  # a CPU generator's state
    text = (run / "config.toml").read_text()
    (run / "config.toml").write_text(
        text.replace('device = "cpu"', 'device = "cuda"').replace("max_steps = 6", "max_steps = 12")
    )
    (run / "done.json").unlink()
    save_checkpoint(path, {**ckpt, "config_hash": config_hash(read_run_config(run))})
    (result,) = train_runs([RunRequest(None, run, resume=True)], progress=False)
    assert result.steps == STEPS
    ckpt = load_checkpoint(path)
    assert ckpt["step"] == STEPS and _finite(ckpt)
    assert ckpt["dropout_rng"].numel() == 16  # a CUDA generator's state: seed and offset
