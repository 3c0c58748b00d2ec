"""fastmix.evaluate.evaluate end to end on real betons, a real manifest and real checkpoints.

The study built here (shared with tests/test_report.py through ``build_study``): a synthetic
"MNIST" of ten oriented gratings (bright), its 15 "MNIST-C" copies, a dark-blob OOD family
standing in for Fashion-MNIST (``fmnist_train`` = OE source, ``fmnist_test`` = test OOD),
Gaussian noise and inverted digits; KMNIST is absent.  Two tiny ConvNets are trained with
cross-entropy + the Outlier Exposure term on the blob family, so they separate ID from OOD and
every assertion about detection metrics is meaningful.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from fastmix.converters.beton import sha256_file, write_beton
from fastmix.converters.build import save_manifest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from fastmix.config import config_hash, dumps, load_config
from fastmix.errors import DataError
from fastmix.rng import derive_seed
from fastmix.train.checkpoint import save_checkpoint
from fastmix.train.models import build_model

N_CLASSES = 10
CORRUPTIONS = (
    "shot_noise",
    "impulse_noise",
    "glass_blur",
    "motion_blur",
    "shear",
    "scale",
    "rotate",
    "brightness",
    "translate",
    "stripe",
    "fog",
    "spatter",
    "dotted_line",
    "zigzag",
    "canny_edges",
)


# ----------------------------------------------------------------------------- synthetic data


def gratings(n: int, rng: np.random.Generator, noise: float = 12.0):
    """Class k: a bright grating, orientation (k % 5) * 36 deg, period 4 or 7 px, in a disk."""
    y = rng.integers(0, N_CLASSES, n)
    yy, xx = np.mgrid[0:28, 0:28].astype(np.float64) - 13.5
    theta = (y % 5) * np.pi / 5
    period = np.where(y < 5, 4.0, 7.0)
    phase = rng.uniform(0, 2 * np.pi, n)
    u = xx[None] * np.cos(theta)[:, None, None] + yy[None] * np.sin(theta)[:, None, None]
    img = 0.5 + 0.5 * np.cos(2 * np.pi * u / period[:, None, None] + phase[:, None, None])
    img *= (xx**2 + yy**2 <= 11.5**2)[None]
    img = 230 * img + rng.normal(0, noise, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), y.astype(np.int64)


def blobs(n: int, rng: np.random.Generator):
    """Dark smooth blobs (the stand-in 'fashion-mnist' family)."""
    yy, xx = np.mgrid[0:28, 0:28].astype(np.float64)
    cy, cx = rng.uniform(6, 22, (2, n))
    s = rng.uniform(3, 7, n)
    img = 90 * np.exp(
        -((yy[None] - cy[:, None, None]) ** 2 + (xx[None] - cx[:, None, None]) ** 2)
        / (2 * s[:, None, None] ** 2)
    )
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def train_model(seed: int, steps: int = 30, bs: int = 32) -> dict:
    """Tiny ConvNet (smoke width 8), Adam: CE on gratings + 0.5 x OE term on blobs (~2 s)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(100 + seed)
    model = build_model("convnet", 8)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: one thread is faster on a busy 2-core machine
    try:
        for _ in range(steps):
            x, y = gratings(bs, rng, noise=40.0)
            xb = torch.from_numpy(np.concatenate([x, blobs(bs, rng)])).float().div(255)
            z = model(xb.unsqueeze(1))
            zi, zo = z[:bs], z[bs:]
            loss = torch.nn.functional.cross_entropy(zi, torch.from_numpy(y))
            loss = loss + 0.5 * (torch.logsumexp(zo, 1) - zo.mean(1)).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _flip(y: np.ndarray, frac: float, rng: np.random.Generator) -> np.ndarray:
    """Flip a fraction of labels to another class (guarantees wrong predictions)."""
    y = y.copy()
    idx = rng.choice(len(y), int(frac * len(y)), replace=False)
    y[idx] = (y[idx] + rng.integers(1, N_CLASSES, len(idx))) % N_CLASSES
    return y


def write_data(root: Path) -> Path:
    rng = np.random.default_rng(0)
    data = root / "data"
    (data / "mnist_c").mkdir(parents=True)
    betons: dict[str, dict] = {}

    def put(name, images, labels, role, family, meta=None):
        path = data / f"{name}.beton"
        write_beton(path, images, labels)
        betons[name] = {
            "file": f"{name}.beton",
            "count": len(images),
            "role": role,
            "family": family,
            "meta": meta or {},
            "sha256": sha256_file(path),
            "bytes": path.stat().st_size,
        }

    x, y = gratings(600, rng, noise=80.0)
    put("mnist_test", x, _flip(y, 0.05, rng), "test", "mnist")
    xv, yv = gratings(400, rng, noise=80.0)
    put("mnist_val", xv, _flip(yv, 0.05, rng), "val", "mnist")
    for k, c in enumerate(CORRUPTIONS):
        xc, yc = gratings(120, rng, noise=40.0 + 8.0 * k)
        put(
            f"mnist_c/{c}",
            xc,
            yc,
            "corrupted",
            "mnist",
            {"origin": "regenerated", "generator_version": "mnist-c-1", "seed": 0},
        )
    minus = np.full(400, -1, np.int64)
    put("fmnist_test", blobs(400, rng), minus, "ood", "fashion-mnist")
    noise = np.clip(rng.normal(128, 60, (300, 28, 28)), 0, 255).astype(np.uint8)
    put("gaussian_noise", noise, minus[:300], "ood", "gaussian-noise")
    put("mnist_inverted", 255 - x[:300], minus[:300], "ood", "mnist-inverted")
    xt, yt = gratings(1000, rng, noise=80.0)  # the detectors' training features
    put("mnist_train", xt, yt, "train", "mnist")
    # the OE source: listed (its family matters), never read by evaluation
    betons["fmnist_train"] = {
        "file": "fmnist_train.beton",
        "count": 0,
        "role": "outlier",
        "family": "fashion-mnist",
        "meta": {},
    }
    save_manifest(data, {"format": 1, "betons": betons})
    return data


def make_run(root: Path, name: str, variant: str, seed: int, state: dict) -> Path:
    # the study's model is the tiny ConvNet train_model trains (BatchNorm buffers included)
    cfg = load_config(variant, ["smoke"], [f"train.seed={seed}", "model.name='convnet'"])
    run = root / "runs" / name
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.toml").write_text(dumps(cfg))
    save_checkpoint(
        run / "checkpoints" / "best.pt",
        {
            "config_hash": config_hash(cfg),
            "variant": variant,
            "epoch": 1,
            "step": 60,
            "model": state,
            "optimizer": {},
            "best_val_acc": 0.0,
        },
    )
    return run


_STUDY: dict = {}


def build_study(tmp_path_factory) -> dict:
    """Data + four runs (base_oe and sp, seeds 0 and 1), built once per test session."""
    if not _STUDY:
        root = tmp_path_factory.mktemp("study")
        data = write_data(root)
        states = {s: train_model(s) for s in (0, 1)}
        runs = {
            f"{v}_s{s}": make_run(root, f"{v}_s{s}", v, s, states[s])
            for v in ("base_oe", "sp")
            for s in (0, 1)
        }
        _STUDY.update(root=root, data=data, runs=runs, states=states, cache={})
    return _STUDY


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return build_study(tmp_path_factory)


@pytest.fixture(scope="module")
def evaluated(study):
    from fastmix.evaluate.evaluate import evaluate_run

    out = {}
    for name in ("base_oe_s0", "sp_s0"):
        out[name] = evaluate_run(study["runs"][name], study["data"], study["cache"], seed=0)
    return out


# ----------------------------------------------------------------------------- helpers


def _fpr95(id_s, ood_s):
    y = np.r_[np.zeros(len(id_s)), np.ones(len(ood_s))]
    fpr, tpr, _ = roc_curve(y, np.r_[id_s, ood_s], drop_intermediate=False)
    return float(fpr[np.argmax(tpr >= 0.95 - 1e-12)])


def _msp(z):
    z = z.astype(np.float64)
    e = np.exp(z - z.max(1, keepdims=True))
    return -(e / e.sum(1, keepdims=True)).max(1)


def _xent(z):
    z = z.astype(np.float64)
    m = z.max(1)
    return z.mean(1) - (m + np.log(np.exp(z - m[:, None]).sum(1)))


def _nll(z, y, t):
    a = z.astype(np.float64) / t
    m = a.max(1, keepdims=True)
    lp = a - m - np.log(np.exp(a - m).sum(1, keepdims=True))
    return -lp[np.arange(len(y)), y].mean()


def _ece(z, y, t, bins=15):
    a = z.astype(np.float64) / t
    p = np.exp(a - a.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    conf, correct = p.max(1), p.argmax(1) == y
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        m = (conf > lo) & (conf <= hi) if b else (conf <= hi)
        if m.any():
            total += m.sum() / len(y) * abs(correct[m].mean() - conf[m].mean())
    return total


# ----------------------------------------------------------------------------- tests


def test_results_schema_and_files(study, evaluated):
    res = evaluated["base_oe_s0"]
    run = study["runs"]["base_oe_s0"]
    on_disk = json.loads((run / "results.json").read_text())
    assert on_disk["clean"] == res["clean"] and on_disk["ood"].keys() == res["ood"].keys()
    for key in (
        "format",
        "variant",
        "seed",
        "convention",
        "inference",
        "clean",
        "mnist_c",
        "ood",
        "ood_unavailable",
        "error_detection",
        "calibration",
        "summary",
        "notes",
    ):
        assert key in res, key
    assert res["variant"] == "base_oe" and res["convention"]["positive_class"] == "ood"
    assert set(res["ood"]) == {"fmnist_test", "gaussian_noise", "mnist_inverted"}
    assert {"kmnist_test", "notmnist_test", "omniglot"} <= set(res["ood_unavailable"])
    assert (run / "features.npz").is_file() and res["features"]["file"] == "features.npz"
    assert set(res["detectors"]) == {"odin", "mahalanobis", "knn", "vim", "react"}
    for entry in res["ood"].values():
        assert list(entry["full"]) == [
            "msp",
            "xent",
            "energy",
            "maxlogit",
            "entropy",
            "odin",
            "mahalanobis",
            "knn",
            "vim",
            "react",
        ]
        for s in entry["full"]:
            assert set(entry["full"][s]) == {"auroc", "aupr_in", "aupr_out", "fpr95"}
            assert set(entry["draws"][s]) == {"mean", "std"}
        assert isinstance(entry["seen_in_training"], bool) and entry["seen_reason"]
    assert not [p for p in run.iterdir() if ".tmp-" in p.name]  # atomic writes left nothing


def test_accuracies_and_mnist_c_from_saved_logits(study, evaluated):
    from fastmix.evaluate.results import load_logits

    res = evaluated["base_oe_s0"]
    lg = load_logits(study["runs"]["base_oe_s0"])
    z, y = lg["mnist_test"]
    assert z.dtype == np.float32 and z.shape == (600, 10)
    assert res["clean"]["test_accuracy"] == pytest.approx(np.mean(z.argmax(1) == y), abs=0)
    zv, yv = lg["mnist_val"]
    assert res["clean"]["val_accuracy"] == pytest.approx(np.mean(zv.argmax(1) == yv), abs=0)
    # the tiny model learned the task (5% of test labels are flipped on purpose)
    assert res["clean"]["test_accuracy"] > 0.8
    mc = res["mnist_c"]
    assert mc["complete"] and mc["n_corruptions"] == 15 and mc["missing"] == []
    assert list(mc["per_corruption"]) == list(CORRUPTIONS)
    for c, acc in mc["per_corruption"].items():
        zc, yc = lg[f"mnist_c/{c}"]
        assert acc == np.mean(zc.argmax(1) == yc)
    assert mc["mean"] == pytest.approx(np.mean(list(mc["per_corruption"].values())), abs=1e-15)
    assert mc["drop"] == pytest.approx(res["clean"]["test_accuracy"] - mc["mean"], abs=1e-15)
    assert mc["origin"] == "regenerated"
    assert mc["origin_label"] == "regenerated by fastmix (generator mnist-c-1), seed 0"


def test_ood_metrics_recomputed_with_sklearn(study, evaluated):
    from fastmix.evaluate.results import load_logits

    res = evaluated["base_oe_s0"]
    lg = load_logits(study["runs"]["base_oe_s0"])
    z_id = lg["mnist_test"][0]
    for name, entry in res["ood"].items():
        z_ood, y_ood = lg[name]
        assert (y_ood == -1).all() and entry["count"] == len(z_ood)
        for s, fn in (("msp", _msp), ("xent", _xent)):
            si, so = fn(z_id), fn(z_ood)
            yy = np.r_[np.zeros(len(si)), np.ones(len(so))]
            got = entry["full"][s]
            assert got["auroc"] == pytest.approx(roc_auc_score(yy, np.r_[si, so]), abs=1e-12)
            assert got["aupr_out"] == pytest.approx(
                average_precision_score(yy, np.r_[si, so]), abs=1e-12
            )
            assert got["aupr_in"] == pytest.approx(
                average_precision_score(1 - yy, -np.r_[si, so]), abs=1e-12
            )
            assert got["fpr95"] == pytest.approx(_fpr95(si, so), abs=1e-12)
            # OE protocol: n_ood = 200 of each set's >= 300 samples, 2 draws (smoke config),
            # drawn from the set's own derived seed
            rng = np.random.default_rng(derive_seed(0, "eval_ood_draws", name))
            aurocs = []
            for _ in range(2):
                pick = np.sort(rng.choice(len(so), 200, replace=False))
                y2 = np.r_[np.zeros(len(si)), np.ones(200)]
                aurocs.append(roc_auc_score(y2, np.r_[si, so[pick]]))
            assert entry["draws"][s]["mean"]["auroc"] == pytest.approx(np.mean(aurocs), abs=1e-12)
            assert entry["draws"][s]["std"]["auroc"] == pytest.approx(np.std(aurocs), abs=1e-12)
    # the OE-trained model separates its (seen) outlier family well
    assert res["ood"]["fmnist_test"]["full"]["msp"]["auroc"] > 0.95


def test_seen_in_training_follows_oe_and_family(evaluated):
    oe, no_oe = evaluated["base_oe_s0"], evaluated["sp_s0"]
    assert oe["ood"]["fmnist_test"]["seen_in_training"] is True
    assert "fashion-mnist" in oe["ood"]["fmnist_test"]["seen_reason"]
    assert oe["ood"]["gaussian_noise"]["seen_in_training"] is False
    assert oe["ood"]["mnist_inverted"]["seen_in_training"] is False
    assert not any(e["seen_in_training"] for e in no_oe["ood"].values())
    assert "without Outlier Exposure" in no_oe["ood"]["fmnist_test"]["seen_reason"]
    # held-out summary excludes the seen set
    assert "fmnist_test" not in oe["summary"]["ood_held_out_sets"]
    assert "fmnist_test" in no_oe["summary"]["ood_held_out_sets"]
    assert any("impulse_noise" in n for n in no_oe["notes"])
    assert not any("impulse_noise" in n for n in oe["notes"])


def test_error_detection_and_calibration(study, evaluated):
    from scipy.optimize import minimize_scalar

    from fastmix.evaluate.results import load_logits

    res = evaluated["base_oe_s0"]
    lg = load_logits(study["runs"]["base_oe_s0"])
    z, y = lg["mnist_test"]
    zv, yv = lg["mnist_val"]
    wrong = z.argmax(1) != y
    assert res["error_detection"]["n_wrong"] == wrong.sum() > 0
    assert res["error_detection"]["auroc"]["msp"] == pytest.approx(
        roc_auc_score(wrong, _msp(z)), abs=1e-12
    )
    cal = res["calibration"]
    assert cal["fitted_on"] == "mnist_val"
    opt = minimize_scalar(
        lambda lt: _nll(zv, yv, math.exp(lt)),
        bounds=(-3, 3),
        method="bounded",
        options={"xatol": 1e-9},
    )
    assert cal["temperature"] == pytest.approx(math.exp(opt.x), rel=1e-4)
    assert _nll(zv, yv, cal["temperature"]) <= _nll(zv, yv, 1.0) + 1e-12
    t = cal["temperature"]
    assert cal["test"]["before"]["ece"] == pytest.approx(_ece(z, y, 1.0), abs=1e-12)
    assert cal["test"]["after"]["ece"] == pytest.approx(_ece(z, y, t), abs=1e-12)
    assert cal["test"]["after"]["nll"] == pytest.approx(_nll(z, y, t), abs=1e-12)
    assert cal["test"]["after"]["temperature"] == t
    assert set(cal["with_ood"]) == set(res["ood"])
    assert cal["with_ood"]["fmnist_test"]["n_ood"] == 200
    assert cal["with_ood_held_out_mean"]["sets"] == ["gaussian_noise", "mnist_inverted"]


def test_predict_logits_bf16_close_to_fp32(study):
    from fastmix.converters.beton import read_beton

    from fastmix.evaluate.inference import predict_logits

    model = build_model("convnet", 8)
    model.load_state_dict(study["states"][0])
    model.eval()
    x, _ = read_beton(study["data"] / "mnist_test.beton")
    z32 = predict_logits(model, x, 256, "cpu", "fp32")
    z16 = predict_logits(model, x, 256, "cpu", "bf16")
    ref = (
        model.to(memory_format=torch.contiguous_format)(
            torch.from_numpy(x).float().div(255).unsqueeze(1)
        )
        .detach()
        .numpy()
    )
    assert z32.dtype == z16.dtype == np.float32
    np.testing.assert_allclose(z32, ref, rtol=1e-4, atol=1e-4)
    assert np.mean(z16.argmax(1) == z32.argmax(1)) >= 0.99
    assert np.abs(z16 - z32).max() < 0.05 * np.abs(z32).max()
    # the fp32 head keeps the logits' resolution: no bf16 quantisation ties
    assert len(np.unique(z16)) > 0.9 * z16.size


def test_load_eval_sets_required_and_optional(study, tmp_path):
    from fastmix.evaluate.sets import load_eval_sets

    sets = load_eval_sets(study["data"], ["gaussian_noise", "kmnist_test"])
    assert set(sets) == {"mnist_test", "mnist_val", "gaussian_noise"}
    assert "kmnist_test" in sets.unavailable and "manifest" in sets.unavailable["kmnist_test"]
    assert sets["gaussian_noise"][0].shape == (300, 28, 28)
    # a required set missing from the manifest: a clear DataError naming it
    save_manifest(tmp_path, {"format": 1, "betons": {}})
    with pytest.raises(DataError, match="mnist_test.*fastmix convert"):
        load_eval_sets(tmp_path, [])
    with pytest.raises(DataError, match="data folder not found"):
        load_eval_sets(tmp_path / "nope", [])


def test_mnist_c_origin_labels():
    from fastmix.evaluate.sets import mnist_c_origin

    man = {
        "betons": {
            "mnist_c/a": {"meta": {"origin": "official"}},
            "mnist_c/b": {
                "meta": {"origin": "regenerated", "generator_version": "mnist-c-1", "seed": 3}
            },
        }
    }
    assert mnist_c_origin(man, ["mnist_c/a"])["label"].startswith("official")
    reg = mnist_c_origin(man, ["mnist_c/b"])
    assert reg["origin"] == "regenerated" and reg["seed"] == 3
    assert reg["label"] == "regenerated by fastmix (generator mnist-c-1), seed 3"
    assert mnist_c_origin(man, ["mnist_c/a", "mnist_c/b"])["origin"] == "mixed"


def test_corruption_list_matches_generator():
    from fastmix.evaluate.sets import MNIST_C_CORRUPTIONS

    assert MNIST_C_CORRUPTIONS == CORRUPTIONS


def test_cli_eval_missing_run(tmp_path, capsys):
    from fastmix.cli.evaluate import add_eval_args, run_eval

    p = argparse.ArgumentParser()
    add_eval_args(p)
    rc = run_eval(p.parse_args([str(tmp_path / "no_such_run")]))
    err = capsys.readouterr().err
    assert rc != 0
    assert "no_such_run" in err and "run directory not found" in err
    # a run whose data folder is missing: also a clear message, not a traceback
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.toml").write_text(dumps(load_config("base", ["smoke"])))
    rc = run_eval(p.parse_args([str(run)]))
    assert rc != 0 and "checkpoint not found" in capsys.readouterr().err


# ----------------------------------------------------------------------------- data integrity


def test_beton_changed_after_convert_is_refused_and_hashed_once(study, tmp_path, monkeypatch):
    """Every beton's bytes are checked against the sha256 manifest.json records, once per
    process and file version: a same-size change is a DataError naming the beton and the
    manifest entry (the size check alone would let it through)."""
    import shutil

    import fastmix.converters.beton as beton

    from fastmix.evaluate.sets import load_eval_sets

    data = tmp_path / "data"
    shutil.copytree(study["data"], data)
    calls: list[str] = []
    real = beton.sha256_file
    monkeypatch.setattr(beton, "sha256_file", lambda p, *a: calls.append(Path(p).name) or real(p))
    load_eval_sets(data, ["gaussian_noise"])
    assert sorted(calls) == ["gaussian_noise.beton", "mnist_test.beton", "mnist_val.beton"]
    load_eval_sets(data, ["gaussian_noise"])  # a new cache of sets, the same files: no rehash
    assert len(calls) == 3
    noise = data / "gaussian_noise.beton"
    raw = bytearray(noise.read_bytes())
    raw[-1] ^= 0xFF
    noise.write_bytes(bytes(raw))
    with pytest.raises(
        DataError,
        match=r"gaussian_noise\.beton: sha256 [0-9a-f]{64}, but "
        r".*manifest\.json entry 'gaussian_noise' records",
    ):
        load_eval_sets(data, ["gaussian_noise"])
    from fastmix.converters.build import load_manifest

    manifest = load_manifest(data)
    del manifest["betons"]["mnist_val"]["sha256"]
    save_manifest(data, manifest)
    with pytest.raises(DataError, match=r"manifest\.json: entry 'mnist_val' records no sha256"):
        load_eval_sets(data, [])


# ----------------------------------------------------------------------------- the run lock


def _try_lock(run: Path) -> str:
    """What a second process taking ``run``'s lock (as a training would) gets."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom pathlib import Path\nfrom fastmix.errors import DataError\n"
        "from fastmix.train.run_dir import lock\n"
        "try:\n    with lock(Path(sys.argv[1])):\n        print('acquired')\n"
        "except DataError as e:\n    print(e)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, str(run)], capture_output=True, text=True, timeout=120
    ).stdout.strip()


def test_eval_holds_the_run_lock_and_clears_its_leftovers(study, monkeypatch, capsys):
    """Evaluation writes under the run directory's lock: a training (or second evaluation)
    of the same run meanwhile gets the lock's DataError; temporaries a killed evaluation left
    are removed once the lock is held; a progress bar names the run and the set."""
    import fastmix.evaluate.evaluate as E

    run = study["runs"]["sp_s1"]
    leftovers = [run / "results.json.tmp-999999", run / "logits.npz.tmp-999998"]
    for p in leftovers:
        p.write_bytes(b"half a file")
    seen: list[str] = []
    write = E._write

    def spy(run_dir, results, inf, *a, **k):
        seen.append(_try_lock(run_dir))
        return write(run_dir, results, inf, *a, **k)

    monkeypatch.setattr(E, "_write", spy)
    res = E.evaluate_run(run, study["data"], study["cache"], seed=0, progress=True)
    assert len(seen) == 1 and seen[0].startswith(f"{run}: another fastmix")
    assert f"(process {os.getpid()})" in seen[0]
    assert not any(p.exists() for p in leftovers)
    assert not [p for p in run.iterdir() if ".tmp-" in p.name]
    assert (run / "results.json").is_file() and res["run"] == "sp_s1"
    err = capsys.readouterr().err  # one bar for the run, the set just done beside it
    assert "eval sp_s1:" in err and "mnist_c/fog" in err
    assert _try_lock(run) == "acquired"  # released when the evaluation ended


def test_cli_eval_refused_while_the_run_is_locked(study, capsys):
    """`fastmix eval` on a run another process holds: exit 2, the lock's message naming the
    holder, and the run's files untouched."""
    import subprocess
    import sys

    from fastmix.cli import main

    run = study["runs"]["base_oe_s0"]
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom pathlib import Path\n"
            "from fastmix.train.run_dir import lock\n"
            "with lock(Path(sys.argv[1])):\n    print('locked', flush=True)\n    time.sleep(120)\n",
            str(run),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
        rc = main(["eval", str(run), "--data", str(study["data"]), "--no-progress"])
        err = capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert rc == 2
    assert f"{run}: another fastmix train is writing this folder (process {holder.pid})" in err
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before


def test_parallel_set_inference_gives_the_logits_of_one_pass_on_all_cores(study, evaluated):
    """Evaluation spreads the sets over one worker thread per core, one torch thread each; every
    set's logits equal one ``predict_logits`` pass over it in this thread on all the cores."""
    from fastmix.evaluate.inference import predict_logits
    from fastmix.evaluate.results import load_logits
    from fastmix.runtime import set_torch_threads
    from fastmix.train.checkpoint import load_run

    run = study["runs"]["sp_s0"]
    model, _ = load_run(run)
    set_torch_threads()
    sets = study["cache"][next(iter(study["cache"]))]
    saved = load_logits(run)
    assert len(saved) >= 4
    for name, (z, _) in saved.items():
        ref = predict_logits(model, sets[name][0], 1000, "cpu", "fp32")
        np.testing.assert_array_equal(z, ref, err_msg=name)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores")
def test_runs_evaluated_on_worker_processes_equal_one_process(evaluated, study, tmp_path):
    """Two runs evaluated by ``evaluate_runs`` on two worker processes (one core each): the
    same fp32 logits, bit for bit, and the same results as the one-process evaluation."""
    import shutil

    from fastmix.evaluate.many import evaluate_runs
    from fastmix.evaluate.results import load_logits

    copies = []
    for name in evaluated:
        copies.append(tmp_path / name)
        shutil.copytree(study["runs"][name], copies[-1])
        for f in ("results.json", "logits.npz", "features.npz"):
            (copies[-1] / f).unlink()
    got = evaluate_runs(copies, study["data"], seed=0, progress=False, log=lambda _: None)
    for (name, ref), res, copy in zip(evaluated.items(), got, copies, strict=True):
        a, b = load_logits(study["runs"][name]), load_logits(copy)
        assert a.keys() == b.keys()
        for s in a:
            assert np.array_equal(a[s][0], b[s][0]) and np.array_equal(a[s][1], b[s][1]), s
        assert res["summary"] == ref["summary"]
        assert res["ood"] == ref["ood"]
