"""Training on real betons: every variant, exact resume, refused checkpoints, NaN handling.

Interruptions here are real signals: a test makes the running trainer send SIGTERM to its own
process at a chosen moment (by wrapping a method with monkeypatch), and the trainer's handler
stops it at the next step boundary (``fastmix.train.preemption``).
"""

from __future__ import annotations

import csv
import os
import signal

import pytest
import torch

from fastmix.config import VARIANTS, load_config
from fastmix.errors import ConfigError, TrainingError
from fastmix.train.checkpoint import CheckpointError, load_checkpoint, load_run
from fastmix.train.preemption import Preempted
from fastmix.train.run import Run
from fastmix.train.schedule import lr_at
from fastmix.train.trainer import train


def _cfg(variant, data_dir, *extra):
    return load_config(variant, ["smoke"], [f"data.dir='{data_dir}'", "train.device='cpu'", *extra])


def _sigterm_when(monkeypatch, method: str, condition) -> None:
    """Make ``Run.<method>`` send SIGTERM to this process once ``condition(run)`` holds after
    it returned (once)."""
    original = getattr(Run, method)
    sent = []

    def wrapped(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        if not sent and condition(self):
            sent.append(self.step)
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    monkeypatch.setattr(Run, method, wrapped)


def _steps(run_dir):
    with open(run_dir / "steps.csv", newline="") as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


def test_every_variant_trains_and_checkpoints(data_dir, tmp_path):
    """The six variants in one job (one stream): each learns, logs, checkpoints and reloads."""
    from fastmix.train.trainer import RunRequest, train_runs

    cfgs = {
        v: _cfg(v, data_dir, "train.max_steps=30", "train.log_every=3", "train.lr=0.05")
        for v in VARIANTS
    }
    results = train_runs([RunRequest(c, tmp_path / v) for v, c in cfgs.items()], progress=False)
    for (variant, cfg), result in zip(cfgs.items(), results, strict=True):
        assert result.steps == 30 and result.variant == variant
        losses = _steps(tmp_path / variant)
        assert len(losses) == 10 and all(torch.isfinite(torch.tensor(losses)))
        assert min(losses[-3:]) < losses[0]  # it learns
        model, saved = load_run(tmp_path / variant)
        assert saved["augment"] == cfg["augment"] and saved["oe"] == cfg["oe"]
        assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
        with open(tmp_path / variant / "metrics.csv", newline="") as f:
            row = list(csv.DictReader(f))[-1]
        assert float(row["val_acc"]) == pytest.approx(result.final_val_acc)
        if variant.endswith("_oe"):
            assert float(row["train_oe"]) > 0
            assert float(row["total_images_per_s"]) == pytest.approx(
                2 * float(row["images_per_s"]), rel=0.01
            )


def test_compile_on_trains_a_compiled_model_to_the_eager_weights(data_dir, tmp_path):
    """``train.compile = "on"`` (what "auto" means on CUDA) runs the step through torch.compile
    (a graph is captured; before, the setting was resolved and then ignored) and trains the
    same weights as eager, up to float rounding (fp32, NCHW, same seed and batches)."""
    from torch._dynamo.utils import counters

    extra = (
        "train.max_steps=4",
        "train.log_every=1",
        "train.precision='fp32'",
        "train.channels_last='off'",
    )
    train(_cfg("base", data_dir, *extra, "train.compile='off'"), tmp_path / "eager", progress=False)
    graphs = counters["stats"]["unique_graphs"]
    train(
        _cfg("base", data_dir, *extra, "train.compile='on'"), tmp_path / "compiled", progress=False
    )
    assert counters["stats"]["unique_graphs"] > graphs
    eager = load_checkpoint(tmp_path / "eager" / "checkpoints" / "last.pt")["model"]
    compiled = load_checkpoint(tmp_path / "compiled" / "checkpoints" / "last.pt")["model"]
    assert eager.keys() == compiled.keys()
    for key in eager:  # the uncompiled module's names: checkpoints stay loadable either way
        torch.testing.assert_close(compiled[key], eager[key], rtol=1e-4, atol=1e-5)
    assert _steps(tmp_path / "compiled") == pytest.approx(_steps(tmp_path / "eager"), rel=1e-4)


def test_only_a_completed_run_counts_as_finished_and_retraining_drops_its_results(
    data_dir, tmp_path, monkeypatch
):
    """`fastmix run` skips a run only when ``train()`` completed it for the same config
    (``done.json``, written last): a run interrupted in its second epoch, with a best.pt from
    the first, is not finished (before, any ``max_steps`` run with a best.pt counted as
    trained). Resuming removes results.json / logits.npz computed from the interrupted
    weights. The same directory asked for another config is refused, naming what differs."""
    from fastmix.train.run_dir import is_finished as finished

    extra = (
        "data.train='mnist_val'",
        "train.epochs=2",
        "train.max_steps=100",
        "train.log_every=10",
    )
    cfg = _cfg("base", data_dir, *extra)  # 5000 images / batch 64: 78 steps per epoch
    run = tmp_path / "base-s0"
    _sigterm_when(monkeypatch, "end_epoch", lambda r: True)  # after epoch 1's row and best.pt
    with pytest.raises(Preempted) as stopped:
        train(cfg, run, progress=False)
    monkeypatch.undo()
    assert stopped.value.exit_code == 143 and "base-s0: step 78/100" in str(stopped.value)
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 78
    assert (run / "checkpoints" / "best.pt").is_file()
    assert not finished(run, cfg)
    (run / "results.json").write_text("{}")  # e.g. `fastmix report` on the unfinished run
    (run / "logits.npz").write_bytes(b"")
    leftovers = [run / "checkpoints" / "last.pt.tmp-99999", run / "metrics.csv.tmp-99999"]
    for p in leftovers:  # what a SIGKILL mid-write leaves
        p.write_bytes(b"half")
    result = train(cfg, run, resume=True, progress=False)
    assert result.steps == 100 and finished(run, cfg)
    assert not (run / "results.json").exists() and not (run / "logits.npz").exists()
    assert not [p for p in leftovers if p.exists()]
    with open(run / "metrics.csv", newline="") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1", "2"]
    # resuming the finished run (it ends inside epoch 2, at max_steps) changes nothing; it
    # used to drop the last row (rows were kept by epoch: step 100 // 78 = 1)
    assert train(cfg, run, resume=True, progress=False).steps == 100
    with open(run / "metrics.csv", newline="") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1", "2"]
    assert finished(run, cfg)
    other = _cfg("base", data_dir, *extra, "train.lr=0.05")
    with pytest.raises(
        ConfigError,
        match=r"holds a run of another config \(train\.lr: .* -> "
        r"0\.05\); choose another --out",
    ):
        finished(run, other)


def test_sigterm_then_resume_gives_the_same_weights(data_dir, tmp_path, monkeypatch):
    """SIGTERM at step 8 of 16: a checkpoint at that step boundary (no step lost), exit code
    143, and ``--resume`` ends with the uninterrupted run's weights, momentum buffers, dropout
    generator and per-step losses, bit for bit (lenet: dropout; pixmix_oe: PixMix draws and the
    outlier stream)."""
    extra = ("train.max_steps=16", "train.log_every=1", "model.name='lenet'", "model.width=4")
    full = train(_cfg("pixmix_oe", data_dir, *extra), tmp_path / "a", progress=False)
    _sigterm_when(monkeypatch, "train_step", lambda r: r.step == 8)
    with pytest.raises(Preempted, match="SIGTERM") as stopped:
        train(_cfg("pixmix_oe", data_dir, *extra), tmp_path / "b", progress=False)
    monkeypatch.undo()
    assert stopped.value.exit_code == 143
    assert load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["step"] == 8
    cfg_b = _cfg("pixmix_oe", data_dir, *extra)
    resumed = train(cfg_b, tmp_path / "b", resume=True, progress=False)
    assert full.steps == resumed.steps == 16
    _assert_same_state(tmp_path / "a", tmp_path / "b")
    assert _steps(tmp_path / "a") == _steps(tmp_path / "b")


def _assert_same_state(a_run, b_run) -> None:
    """Weights, optimiser state (momentum buffers) and dropout generator, bit for bit."""
    a = load_checkpoint(a_run / "checkpoints" / "last.pt")
    b = load_checkpoint(b_run / "checkpoints" / "last.pt")
    assert a["step"] == b["step"]
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for i, state in a["optimizer"]["state"].items():
        assert torch.equal(state["momentum_buffer"], b["optimizer"]["state"][i]["momentum_buffer"])
    assert torch.equal(a["dropout_rng"], b["dropout_rng"])


def test_existing_run_is_not_overwritten(data_dir, tmp_path):
    cfg = _cfg("base", data_dir, "train.max_steps=2")
    train(cfg, tmp_path / "r", progress=False)
    with pytest.raises(ConfigError, match="already holds a run; pass --resume"):
        train(cfg, tmp_path / "r", progress=False)


def test_checkpoint_from_another_config_is_refused(data_dir, tmp_path):
    train(_cfg("base", data_dir, "train.max_steps=2"), tmp_path / "r", progress=False)
    cfg_text = (tmp_path / "r" / "config.toml").read_text()
    (tmp_path / "r" / "config.toml").write_text(cfg_text.replace("lr = 0.1", "lr = 0.3"))
    before = (tmp_path / "r" / "checkpoints" / "last.pt").read_bytes()
    with pytest.raises(CheckpointError, match="from another config"):
        train(load_config("base"), tmp_path / "r", resume=True, progress=False)
    assert (tmp_path / "r" / "checkpoints" / "last.pt").read_bytes() == before


def test_truncated_checkpoint_is_refused(data_dir, tmp_path):
    train(_cfg("base", data_dir, "train.max_steps=2"), tmp_path / "r", progress=False)
    last = tmp_path / "r" / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"last\.pt: unreadable or truncated"):
        train(load_config("base"), tmp_path / "r", resume=True, progress=False)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(data_dir, tmp_path):
    cfg = _cfg(
        "base",
        data_dir,
        "train.max_steps=30",
        "train.ckpt_every=1",
        "train.lr=1e30",
        "train.warmup_frac=0.0",
    )
    with pytest.raises(TrainingError, match=r"non-finite (loss|weights).* step \d+") as err:
        train(cfg, tmp_path / "r", progress=False)
    assert "last good checkpoint" in str(err.value)
    last = tmp_path / "r" / "checkpoints" / "last.pt"
    if last.exists():
        ckpt = load_checkpoint(last)
        assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def test_missing_betons_are_named(tmp_path):
    cfg = load_config("pixmix_oe", ["smoke"], [f"data.dir='{tmp_path}'"])
    with pytest.raises(ConfigError, match="betons not found: train=mnist_train.*mixing=fractals"):
        train(cfg, tmp_path / "r", progress=False)


def test_lr_schedule_is_triangular():
    lrs = [lr_at(s, 100, 1.0, "onecycle", 0.2) for s in range(100)]
    assert lrs[19] == pytest.approx(1.0) and lrs[0] == pytest.approx(0.05)
    assert all(a <= b for a, b in zip(lrs[:20], lrs[1:20], strict=False))
    assert all(a >= b for a, b in zip(lrs[19:], lrs[20:], strict=False))
    assert lrs[-1] == pytest.approx(1 / 80)


def test_cosine_schedule_is_the_oe_papers():
    """The OE paper's ``LambdaLR(cosine_annealing(step, T, 1, 1e-6 / lr))``, stepped before each
    optimiser step, computed here from its formula: step s uses the factor at s + 1."""
    import math

    lr, lo, total = 0.01, 1e-6, 50
    for s in range(total):
        factor = lo / lr + (1 - lo / lr) * 0.5 * (1 + math.cos((s + 1) / total * math.pi))
        assert lr_at(s, total, lr, "cosine", lr_min=lo) == pytest.approx(lr * factor, rel=1e-12)
    assert lr_at(total - 1, total, lr, "cosine", lr_min=lo) == pytest.approx(lo)


def test_sigterm_while_a_checkpoint_is_being_written(data_dir, tmp_path, monkeypatch):
    """SIGTERM arrives inside ``torch.save`` of the mid-epoch checkpoint at step 5: that write
    completes, the stop comes at that step boundary with a valid checkpoint (written again),
    and the resumed run equals the uninterrupted one."""
    extra = ("train.max_steps=12", "train.log_every=1", "train.ckpt_every=5")
    train(_cfg("sp_oe", data_dir, *extra), tmp_path / "a", progress=False)
    original, sent = torch.save, []

    def save(obj, f, *args, **kwargs):
        if not sent:
            sent.append(obj["step"])
            os.kill(os.getpid(), signal.SIGTERM)
        return original(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(Preempted):
        train(_cfg("sp_oe", data_dir, *extra), tmp_path / "b", progress=False)
    monkeypatch.undo()
    assert sent == [5]
    assert load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["step"] == 5
    assert not list((tmp_path / "b").rglob("*.tmp-*"))
    train(None, tmp_path / "b", resume=True, progress=False)
    _assert_same_state(tmp_path / "a", tmp_path / "b")
