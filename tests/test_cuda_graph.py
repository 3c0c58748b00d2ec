"""The parts of the CUDA step that run on a CPU (the graph itself: tests/test_cuda.py).

* ``sgd_update``, the optimiser step a CUDA graph replays (lr read from a tensor), gives
  ``torch.optim.SGD``'s weights and momentum over several steps: Nesterov and plain momentum,
  weight decay on the weights only (the run's two parameter groups), from torch's own first step.
* A checkpoint whose dropout generator state is a CUDA generator's (16 bytes: seed, offset), as a
  run started with ``train.device = "auto"`` on a GPU machine writes it, resumes on the CPU to
  the last step (it was refused as a damaged checkpoint).
* ``train.cuda_graphs = "on"`` without CUDA is refused; ``auto`` resolves to off on a CPU.
"""

from __future__ import annotations

import copy

import pytest
import torch

from fastmix.config import load_config
from fastmix.errors import ConfigError
from fastmix.runtime import resolve_runtime
from fastmix.train.checkpoint import load_checkpoint, save_checkpoint
from fastmix.train.cuda_graph import sgd_update
from fastmix.train.models import build_model
from fastmix.train.trainer import RunRequest, train_runs


def _sgd(model: torch.nn.Module, lr: float, momentum: float, nesterov: bool, wd: float):
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    return torch.optim.SGD(
        [{"params": decay, "weight_decay": wd}, {"params": rest, "weight_decay": 0.0}],
        lr=lr,
        momentum=momentum,
        nesterov=nesterov,
    )


@pytest.mark.parametrize("momentum, nesterov", [(0.9, True), (0.9, False), (0.0, False)])
def test_sgd_update_gives_torch_sgd_steps(momentum, nesterov):
    torch.manual_seed(0)
    ours = build_model("lenet", 8)
    theirs = copy.deepcopy(ours)
    opt_ours = _sgd(ours, 0.1, momentum, nesterov, 5e-4)
    opt_theirs = _sgd(theirs, 0.1, momentum, nesterov, 5e-4)
    g = torch.Generator().manual_seed(1)
    for step, lr in enumerate([0.05, 0.1, 0.07, 0.02, 0.2]):
        x = torch.rand(16, 1, 28, 28, generator=g)
        y = torch.randint(0, 10, (16,), generator=g)
        for model, opt in ((ours, opt_ours), (theirs, opt_theirs)):
            model.eval()  # no dropout: the two models see the same function
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x), y).backward()
        sgd_update(opt_ours, torch.tensor(lr))
        for group in opt_theirs.param_groups:
            group["lr"] = lr
        opt_theirs.step()
        for (name, a), b in zip(
            ours.state_dict().items(), theirs.state_dict().values(), strict=True
        ):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=f"step {step} {name}")
    if momentum:
        for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
            torch.testing.assert_close(
                opt_ours.state[p]["momentum_buffer"], opt_theirs.state[q]["momentum_buffer"]
            )
    assert not torch.equal(ours.state_dict()["conv1.weight"], build_model("lenet", 8).conv1.weight)


def test_a_checkpoint_with_a_cuda_generator_state_resumes_on_the_cpu(data_dir, tmp_path):
    run = tmp_path / "base"
    cfg = load_config(
        "base", ["smoke"], [f"data.dir='{data_dir}'", "train.device='cpu'", "train.max_steps=6"]
    )
    train_runs([RunRequest(cfg, run)], progress=False)
    path = run / "checkpoints" / "last.pt"
    ckpt = load_checkpoint(path)
    assert ckpt["dropout_rng"].numel() > 16
    cuda_state = torch.tensor([7, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0], dtype=torch.uint8)
    save_checkpoint(path, {**ckpt, "dropout_rng": cuda_state})
    text = (run / "config.toml").read_text()
    assert "max_steps = 6" in text
    (run / "config.toml").write_text(text.replace("max_steps = 6", "max_steps = 12"))
    (run / "done.json").unlink()
    from fastmix.config import config_hash
    from fastmix.train.run_dir import read_run_config

    save_checkpoint(
        path, {**load_checkpoint(path), "config_hash": config_hash(read_run_config(run))}
    )
    (result,) = train_runs([RunRequest(None, run, resume=True)], progress=False)
    assert result.steps == 12
    after = load_checkpoint(path)
    assert after["step"] == 12
    assert all(torch.isfinite(v).all() for v in after["model"].values() if v.is_floating_point())
    assert after["dropout_rng"].numel() == ckpt["dropout_rng"].numel()  # a CPU generator again


def test_cuda_graphs_on_needs_cuda():
    with pytest.raises(ConfigError, match="cuda_graphs = on needs a CUDA device"):
        resolve_runtime("cpu", cuda_graphs="on")
    assert not resolve_runtime("cpu").cuda_graphs
