"""Post-hoc OOD detectors (fastmix.evaluate.detectors) against independent implementations.

pytorch-ood 0.4.0 would be the natural oracle, but it imports torchvision, whose registry wheels
fail to import beside the pinned CPU torch (``operator torchvision::nms does not exist``). So
every detector is recomputed here from its paper's formula with scikit-learn / numpy / scipy
building blocks (``EmpiricalCovariance``, ``NearestNeighbors``, ``np.linalg.eig`` as in the
ViM authors' code, ``np.percentile``, ``scipy.special.logsumexp``; ODIN with float64 autograd
and, for a linear model, the closed-form input gradient), on the features and the model of a
real evaluated run (the study of tests/test_evaluate.py: real betons, a trained ConvNet,
``fastmix eval``'s own features.npz). Then constructed features whose answer is known, the
features file, the config switch, and the report section from real smoke runs.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from sklearn.covariance import EmpiricalCovariance
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors

from fastmix.config import dumps, load_config
from fastmix.errors import ConfigError
from fastmix.evaluate.detectors import knn, mahalanobis, odin, react, training_features, vim
from fastmix.train.models import build_model
from tests.test_evaluate import build_study, make_run

OOD_SETS = ("fmnist_test", "gaussian_noise", "mnist_inverted")


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A study run evaluated by fastmix with every detector; its features, head and model."""
    from fastmix.evaluate.evaluate import evaluate_run
    from fastmix.evaluate.results import load_features, load_logits

    study = build_study(tmp_path_factory)
    path = study["runs"]["base_oe_s1"]
    res = evaluate_run(path, study["data"], study["cache"], seed=0, progress=False)
    model = build_model("convnet", 8)
    model.load_state_dict(study["states"][1])
    model.eval()
    head = model.get_classifier()
    feats = load_features(path)
    return {
        "study": study,
        "path": path,
        "res": res,
        "model": model,
        "feats": feats,
        "logits": load_logits(path),
        "W": head.weight.detach().double().numpy(),
        "b": head.bias.detach().double().numpy(),
    }


def _f(run, name):
    return run["feats"][f"features/{name}"].astype(np.float64)


def _train(run):
    return training_features(_f(run, "train"), run["feats"]["labels/train"], run["W"], run["b"])


def _auroc(id_s, ood_s):
    return roc_auc_score(np.r_[np.zeros(len(id_s)), np.ones(len(ood_s))], np.r_[id_s, ood_s])


def _check_against_results(run, name, ref, abs=1e-12):
    """``ref(features) -> scores``: results.json's AUROC for detector ``name`` equals the
    reference's on the stored features."""
    id_s = ref(_f(run, "mnist_test"))
    for ood in OOD_SETS:
        got = run["res"]["ood"][ood]["full"][name]["auroc"]
        assert got == pytest.approx(_auroc(id_s, ref(_f(run, ood))), abs=abs), (name, ood)


# ----------------------------------------------------------------------------- parity


def test_mahalanobis_matches_empirical_covariance(run):
    """Lee et al. 2018: class means, one covariance of the class-centred training features
    (sklearn EmpiricalCovariance), distance to the closest class."""
    f, y = _f(run, "train"), run["feats"]["labels/train"]
    mus = {c: f[y == c].mean(0) for c in np.unique(y)}
    cov = EmpiricalCovariance().fit(f - np.stack([mus[c] for c in y]))

    def ref(x):
        return np.min([cov.mahalanobis(x - mu) for mu in mus.values()], axis=0)

    fitted = mahalanobis.fit(_train(run))
    for s in ("mnist_test", *OOD_SETS):
        np.testing.assert_allclose(
            mahalanobis.score(fitted, _f(run, s)), ref(_f(run, s)), rtol=1e-9
        )
    _check_against_results(run, "mahalanobis", ref)


def test_knn_matches_nearest_neighbors(run):
    """Sun et al. 2022: L2-normalised features, distance to the 50th nearest training feature
    (sklearn NearestNeighbors, exact float64 search). fastmix searches with a float32 matmul:
    the squared distances agree to 1e-6 (they spread over ~0.005-1), the AUROCs up to the
    rare rank swap that causes."""

    def unit(x):
        return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-10)

    nn = NearestNeighbors(n_neighbors=50).fit(unit(_f(run, "train")))

    def ref(x):
        return nn.kneighbors(unit(x))[0][:, -1]

    fitted = knn.fit(_train(run))
    assert fitted.k == 50
    for s in ("mnist_test", *OOD_SETS):
        np.testing.assert_allclose(
            knn.score(fitted, _f(run, s)) ** 2, ref(_f(run, s)) ** 2, rtol=0, atol=1e-6
        )
    _check_against_results(run, "knn", ref, abs=1e-4)


def test_vim_matches_the_authors_recipe(run):
    """Wang et al. 2022, as the authors' code computes it: u = -pinv(W) b, EmpiricalCovariance
    (assume_centered) of f - u, np.linalg.eig, residual space beyond the top D = F/2
    eigenvectors, alpha = mean max logit / mean residual norm on training."""
    f, W, b = _f(run, "train"), run["W"], run["b"]
    u = -np.matmul(np.linalg.pinv(W), b)
    ec = EmpiricalCovariance(assume_centered=True).fit(f - u)
    vals, vecs = np.linalg.eig(ec.covariance_)
    D = f.shape[1] // 2
    NS = np.ascontiguousarray(np.real(vecs[:, np.argsort(vals * -1)[D:]]))
    alpha = (f @ W.T + b).max(axis=-1).mean() / np.linalg.norm((f - u) @ NS, axis=-1).mean()

    def ref(x):
        return alpha * np.linalg.norm((x - u) @ NS, axis=-1) - logsumexp(x @ W.T + b, axis=-1)

    fitted = vim.fit(_train(run))
    assert fitted.dim == D == 16 and fitted.alpha == pytest.approx(alpha, rel=1e-9)
    for s in ("mnist_test", *OOD_SETS):
        np.testing.assert_allclose(
            vim.score(fitted, _f(run, s)), ref(_f(run, s)), rtol=1e-8, atol=1e-8
        )
    _check_against_results(run, "vim", ref)


def test_react_matches_clip_then_energy(run):
    """Sun et al. 2021: clip at the 90th percentile of all training activations, then the
    energy -logsumexp(W h + b)."""
    c = np.percentile(_f(run, "train").flatten(), 90)

    def ref(x):
        return -logsumexp(np.clip(x, None, c) @ run["W"].T + run["b"], axis=1)

    fitted = react.fit(_train(run))
    assert fitted.threshold == c
    for s in ("mnist_test", *OOD_SETS):
        np.testing.assert_allclose(react.score(fitted, _f(run, s)), ref(_f(run, s)), rtol=1e-12)
    _check_against_results(run, "react", ref)
    assert run["res"]["detectors"]["react"]["hyperparameters"]["threshold"] == c


def _odin_ref64(model, images, eps, T=1000.0):
    """ODIN in float64: x~ = x - eps * sign(-grad log S(x; T)) (sign: >= 0 -> +1, as the
    official code), S(x~; T) = max softmax(z(x~) / T); returns -S."""
    m = copy.deepcopy(model).double().eval()
    x = torch.from_numpy(images).double().div(255).unsqueeze(1).requires_grad_(True)
    log_s = torch.log_softmax(m(x) / T, dim=1).max(dim=1).values
    (g,) = torch.autograd.grad(-log_s.sum(), x)
    xt = x.detach() - eps * torch.where(g >= 0, 1.0, -1.0).double()
    with torch.no_grad():
        return -torch.softmax(m(xt) / T, dim=1).max(dim=1).values.numpy()


def test_odin_matches_float64_autograd(run):
    """The ConvNet: fastmix's fp32 ODIN against a float64 reference written from the
    formula. Agreement to 1e-8 on S (S ~ 0.1 at T = 1000; a sign flip of the perturbation on
    any pixel would move it by more), and the AUROCs of results.json on the same sets."""
    from fastmix.converters.beton import read_beton

    data = run["study"]["data"]
    eps = run["res"]["detectors"]["odin"]["hyperparameters"]["epsilon"]
    assert eps in odin.EPSILONS
    refs = {}
    for s in ("mnist_test", *OOD_SETS):
        x, _ = read_beton(data / f"{s}.beton")
        got = odin.score(odin.perturbed_logits(copy.deepcopy(run["model"]), x, [eps])[eps])
        refs[s] = _odin_ref64(run["model"], x, eps)
        np.testing.assert_allclose(got, refs[s], rtol=0, atol=1e-8)
    for s in OOD_SETS:  # every study set has < 1000 images: no subset
        assert "subsets" not in run["res"]["ood"][s]
        assert run["res"]["ood"][s]["full"]["odin"]["auroc"] == pytest.approx(
            _auroc(refs["mnist_test"], refs[s]), abs=1e-12
        )
    # eps chosen on ID validation only: the largest mean S(x~; T) over the grid
    xv, _ = read_beton(data / "mnist_val.beton")
    means = {e: float(-_odin_ref64(run["model"], xv, e).mean()) for e in odin.EPSILONS}
    assert max(means, key=means.get) == eps


class _Linear(torch.nn.Module):
    """A softmax regression on the pixels with the model API (features = the input)."""

    def __init__(self, W, b):
        super().__init__()
        self.head = torch.nn.Linear(W.shape[1], W.shape[0])
        with torch.no_grad():
            self.head.weight.copy_(torch.from_numpy(W))
            self.head.bias.copy_(torch.from_numpy(b))

    def forward_features(self, x):
        return x.flatten(1)

    def forward_head(self, f):
        return self.head(f)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


def test_odin_on_a_linear_model_matches_the_closed_form():
    """For z = W x + b, grad_x -log S(x; T) = W^T (softmax(z / T) - e_argmax) / T: ODIN in
    numpy, float64, no autograd."""
    rng = np.random.default_rng(3)
    W = rng.normal(0, 0.05, (10, 784)).astype(np.float32)
    b = rng.normal(0, 0.1, 10).astype(np.float32)
    images = rng.integers(0, 256, (64, 28, 28), dtype=np.uint8)
    T = 1000.0
    x = images.reshape(64, -1).astype(np.float64) / 255
    z = x @ W.T.astype(np.float64) + b
    p = np.exp(z / T - logsumexp(z / T, axis=1, keepdims=True))
    grad = (p - np.eye(10)[z.argmax(1)]) @ W.astype(np.float64) / T
    for eps in (0.0, 0.0025, 0.08):  # eps = 0: the temperature-scaled MSP
        xt = x - eps * np.where(grad >= 0, 1.0, -1.0)
        zt = xt @ W.T.astype(np.float64) + b
        ref = -np.exp(zt / T - logsumexp(zt / T, axis=1, keepdims=True)).max(1)
        got = odin.score(odin.perturbed_logits(_Linear(W, b), images, [eps])[eps])
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)


# ----------------------------------------------------------------------------- known answers


def _clusters(seed: int = 0):
    """4 classes of Gaussian features N(8 e_c, I) in 16 dimensions; the head W = [8 e_c],
    b = 0; a far-away OOD cluster N(30 e_10, I), off the class directions."""
    rng = np.random.default_rng(seed)
    F, C = 16, 4
    mu = 8.0 * np.eye(F)[:C]

    def draw(n):
        y = rng.integers(0, C, n)
        return mu[y] + rng.normal(size=(n, F)), y

    f_train, y_train = draw(4000)
    f_test, _ = draw(1000)
    f_ood = 30.0 * np.eye(F)[10] + rng.normal(size=(1000, F))
    return training_features(f_train, y_train, mu, np.zeros(C)), f_test, f_ood


@pytest.mark.parametrize("name", ["mahalanobis", "knn", "vim"])
def test_a_far_cluster_is_separated_perfectly(name):
    """ReAct is not in this list: its clip at the 90th percentile of all activations caps the
    own-class unit of ID features too (only 1 of 16 units is active), so it separates this
    construction only partly (AUROC ~0.93); its own test builds the case it is designed for."""
    from fastmix.evaluate.detectors import FEATURE_DETECTORS
    from fastmix.evaluate.metrics import ood_metrics

    train, f_test, f_ood = _clusters()
    mod = FEATURE_DETECTORS[name]
    fitted = mod.fit(train)
    m = ood_metrics(mod.score(fitted, f_test), mod.score(fitted, f_ood))
    assert m["auroc"] == 1.0 and m["fpr95"] == 0.0


def test_known_values_on_the_clusters():
    """Mahalanobis: the covariance is I, so ID distances are chi-square with 16 degrees of
    freedom (minimised over 4 classes) and the OOD ones about |30 e_10 - 8 e_c|^2 = 964. KNN:
    a normalised OOD point is within ~1/30 of e_10, so its 50th neighbour is about the bank
    point with the 50th largest cosine with e_10: distance sqrt(2 - 2 cos).
    ReAct with the 100th percentile: no clipping, the plain energy."""
    train, f_test, f_ood = _clusters()
    md = mahalanobis.fit(train)
    assert np.allclose(np.linalg.inv(md.precision), np.eye(16), atol=0.1)
    assert 14 < mahalanobis.score(md, f_test).mean() < 18
    assert 900 < mahalanobis.score(md, f_ood).mean() < 1030
    fitted = knn.fit(train)
    cos_50 = np.sort(fitted.bank[:, 10])[-50]  # the 50th largest cosine with e_10
    d = knn.score(fitted, f_ood)
    assert np.all(np.abs(d - np.sqrt(2 - 2 * cos_50)) < 0.05)
    full = react.fit(train, percentile=100)
    assert full.threshold == train.features.max()
    np.testing.assert_allclose(
        react.score(full, f_test), -logsumexp(f_test @ train.weight.T, axis=1), rtol=1e-12
    )


def test_react_clipping_removes_an_abnormal_activation():
    """Sun et al. 2021's case: an OOD input with one abnormally large activation in a class's
    units is overconfident (the plain energy ranks it as more in-distribution than every ID
    sample); clipped at the 90th percentile of the training activations it is not."""
    from fastmix.evaluate.metrics import auroc
    from fastmix.evaluate.scores import energy

    rng = np.random.default_rng(2)
    W = np.kron(np.eye(4), np.ones(4))  # class c sums units 4c .. 4c+3

    def id_features(n):
        y = rng.integers(0, 4, n)
        return rng.uniform(0, 1, (n, 16)) + W[y], y

    f_train, y_train = id_features(4000)
    f_test, _ = id_features(1000)
    f_ood = rng.uniform(0, 1, (1000, 16))
    f_ood[np.arange(1000), rng.integers(0, 16, 1000)] = 30.0
    fitted = react.fit(training_features(f_train, y_train, W, np.zeros(4)))
    assert 1.5 < fitted.threshold < 1.7  # 25% of the values in U(1, 2), 75% in U(0, 1)
    assert auroc(energy(f_test @ W.T), energy(f_ood @ W.T)) == 0.0
    assert auroc(react.score(fitted, f_test), react.score(fitted, f_ood)) > 0.99


def test_vim_residual_sees_what_the_logits_cannot():
    """Features in the class directions plus small noise; OOD adds a large component in a
    direction the head ignores (W e_10 = 0): the energy cannot see it, ViM's residual norm
    separates it perfectly."""
    from fastmix.evaluate.metrics import auroc
    from fastmix.evaluate.scores import energy

    rng = np.random.default_rng(1)
    mu = 3.0 * np.eye(16)[:4]
    y = rng.integers(0, 4, 3000)
    f = mu[y] + 0.1 * rng.normal(size=(3000, 16))
    train = training_features(f[:2000], y[:2000], mu, np.zeros(4))
    f_ood = f[2000:2500] + 5.0 * np.eye(16)[10]
    fitted = vim.fit(train)
    assert auroc(energy(f[2500:] @ mu.T), energy(f_ood @ mu.T)) == pytest.approx(0.5, abs=0.1)
    assert auroc(vim.score(fitted, f[2500:]), vim.score(fitted, f_ood)) == 1.0


def test_bad_inputs_are_value_errors():
    train, f_test, _ = _clusters()
    with pytest.raises(ValueError, match="dimensions"):
        mahalanobis.score(mahalanobis.fit(train), f_test[:, :8])
    with pytest.raises(ValueError, match="NaN"):
        knn.score(knn.fit(train), np.full((2, 16), np.nan))
    with pytest.raises(ValueError, match="k = 5000"):
        knn.fit(train, k=5000)
    with pytest.raises(ValueError, match="labels"):
        training_features(train.features, train.labels + 10, train.weight, train.bias)


# ----------------------------------------------------------------------------- files, config


def test_features_file_round_trips(run):
    """features.npz holds float16 features of the training subset, validation, test and
    every OOD set, their labels and the subset's rows; they are the model's penultimate
    features (recomputed here in plain float32 torch) rounded to float16."""
    from fastmix.converters.beton import read_beton

    feats, res = run["feats"], run["res"]
    sets = ["mnist_test", "mnist_val", *OOD_SETS, "train"]
    assert sorted(feats) == sorted(
        [*(f"features/{s}" for s in sets), *(f"labels/{s}" for s in sets), "indices/train"]
    )
    assert res["features"]["file"] == "features.npz" and res["features"]["dtype"] == "float16"
    assert res["features"]["n_train"] == 1000 and res["features"]["dim"] == 32
    idx = feats["indices/train"]
    assert np.array_equal(idx, np.arange(1000))  # 1000 training images < TRAIN_SUBSET: all
    data = run["study"]["data"]
    for s in sets:
        x, y = read_beton(data / f"{(s if s != 'train' else 'mnist_train')}.beton")
        if s == "train":
            x, y = x[idx], y[idx]
        f = feats[f"features/{s}"]
        assert f.dtype == np.float16 and f.shape == (len(x), 32)
        assert np.array_equal(feats[f"labels/{s}"], y)
        if s != "train":
            assert np.array_equal(run["logits"][s][1], y)
        model = copy.deepcopy(run["model"]).to(memory_format=torch.contiguous_format)
        with torch.no_grad():
            ref = model.forward_features(torch.from_numpy(x).float().div(255).unsqueeze(1))
        np.testing.assert_allclose(f.astype(np.float32), ref.numpy(), rtol=2e-3, atol=2e-4)


def test_features_switched_off(run, tmp_path):
    """eval.features = false: no features.npz (a stale one from an earlier evaluation is
    removed), the detectors still run on the features in memory."""
    from fastmix.config import config_hash
    from fastmix.evaluate.evaluate import evaluate_run
    from fastmix.train.checkpoint import save_checkpoint

    study = run["study"]
    cfg = load_config(
        "base_oe", ["smoke"], ["train.seed=1", "eval.features=false", "model.name='convnet'"]
    )
    path = tmp_path / "off"
    (path / "checkpoints").mkdir(parents=True)
    (path / "config.toml").write_text(dumps(cfg))
    save_checkpoint(
        path / "checkpoints" / "best.pt",
        {
            "config_hash": config_hash(cfg),
            "variant": "base_oe",
            "epoch": 1,
            "step": 60,
            "model": study["states"][1],
            "optimizer": {},
            "best_val_acc": 0.0,
        },
    )
    (path / "features.npz").write_bytes(b"stale")
    res = evaluate_run(path, study["data"], study["cache"], seed=0, progress=False)
    assert not (path / "features.npz").exists() and (path / "logits.npz").is_file()
    assert res["features"]["file"] is None
    on = run["res"]
    for s in OOD_SETS:  # the same weights and sets: the same numbers with the file or without
        assert res["ood"][s]["full"] == on["ood"][s]["full"]
    assert json.loads((path / "results.json").read_text())["detectors"].keys() == {
        "odin",
        "mahalanobis",
        "knn",
        "vim",
        "react",
    }


def test_config_switch_is_checked(tmp_path):
    assert load_config("base", ["smoke"])["eval"]["features"] is True
    with pytest.raises(ConfigError, match="eval.features: expected true/false"):
        load_config("base", ["smoke"], ["eval.features=1"])
    bad = dumps(load_config("base", ["smoke"])).replace("features = true", 'features = "yes"')
    (tmp_path / "config.toml").write_text(bad)
    from fastmix.config import read_config_file

    with pytest.raises(ConfigError, match="eval.features must be true/false"):
        read_config_file(tmp_path / "config.toml")


def test_unknown_score_names_list_the_detectors(run, tmp_path):
    from fastmix.evaluate.evaluate import evaluate_run

    study = run["study"]
    path = make_run(tmp_path, "bad", "base", 0, study["states"][0])
    overrides = ["train.seed=0", "model.name='convnet'", "eval.scores=['msp','mahalanobs']"]
    match = r"eval.scores: unknown score\(s\) 'mahalanobs'; valid: .*mahalanobis"
    with pytest.raises(ConfigError, match=match):  # refused at config time, before training
        load_config("base", ["smoke"], overrides)
    cfg = load_config("base", ["smoke"], overrides[:2])
    cfg["eval"]["scores"] = ["msp", "mahalanobs"]  # a run config edited by hand
    (path / "config.toml").write_text(dumps(cfg))
    with pytest.raises(ConfigError, match=match):
        evaluate_run(path, study["data"], study["cache"], progress=False)


# ----------------------------------------------------------------------------- report


@pytest.mark.slow
def test_report_section_from_real_smoke_runs(data_dir, tmp_path):
    """Two smoke runs trained on real betons (base, base_oe), evaluated and reported through
    the CLI: the detector x variant table, its seen / held-out labelling and its numbers."""
    from fastmix.cli import main
    from fastmix.evaluate.results import load_results

    runs = tmp_path / "runs"
    for v in ("base", "base_oe"):
        assert (
            main(
                [
                    "train",
                    "--variant",
                    v,
                    "--config",
                    "smoke",
                    "--data",
                    str(data_dir),
                    "--out",
                    str(runs),
                    "--no-progress",
                ]
            )
            == 0
        )
    paths = [str(runs / "base-s0"), str(runs / "base_oe-s0")]
    out = tmp_path / "report"
    assert (
        main(["report", *paths, "--data", str(data_dir), "--out", str(out), "--no-progress"]) == 0
    )
    md = (out / "report.md").read_text()
    head = "### Post-hoc detectors against training-time methods (held-out OOD sets)"
    assert head in md
    section = md.split(head, 1)[1].split("\n## ", 1)[0]
    assert "Mean over the OOD sets every model held out: gaussian_noise." in section
    assert "Left out as **seen in training**: fmnist_test (by Base+OE)." in section
    assert "| score | uses | Base | Base+OE |" in section
    res = {v: load_results(runs / f"{v}-s0") for v in ("base", "base_oe")}
    for det in ("msp", "odin", "mahalanobis", "knn", "vim", "react"):
        row = next(ln for ln in section.splitlines() if ln.startswith(f"| `{det}` |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        for v, cell in zip(("base", "base_oe"), cells[2:], strict=True):
            e = res[v]["ood"]["gaussian_noise"]["full"][det]
            assert cell == f"{100 * e['auroc']:.2f} / {100 * e['fpr95']:.2f}", (det, v)
    assert "- On Base, the best post-hoc detector is `" in section
    assert "- Base+OE with MSP: " in section


def test_without_the_training_beton_the_feature_detectors_are_unavailable(run, tmp_path):
    """A data folder without ``data.train``: the feature detectors are reported unavailable
    (results.json and notes say why), ODIN and the logit scores are evaluated as usual."""
    import shutil

    from fastmix.converters.build import load_manifest, save_manifest

    from fastmix.evaluate.evaluate import evaluate_run

    data = tmp_path / "data"
    shutil.copytree(run["study"]["data"], data)
    manifest = load_manifest(data)
    del manifest["betons"]["mnist_train"]
    save_manifest(data, manifest)
    path = make_run(tmp_path, "no_train", "base_oe", 1, run["study"]["states"][1])
    res = evaluate_run(path, data, {}, seed=0, progress=False)
    for name in ("mahalanobis", "knn", "vim", "react"):
        assert res["detectors"][name]["unavailable"].startswith(
            "training set mnist_train unavailable: not in manifest.json"
        )
    assert list(res["ood"]["gaussian_noise"]["full"]) == [
        "msp",
        "xent",
        "energy",
        "maxlogit",
        "entropy",
        "odin",
    ]
    assert (
        res["ood"]["gaussian_noise"]["full"]["odin"]
        == (run["res"]["ood"]["gaussian_noise"]["full"]["odin"])
    )
    assert any(
        n.startswith("Detectors not evaluated: mahalanobis, knn, vim, react") for n in res["notes"]
    )
    assert res["features"]["n_train"] == 0 and "train" not in res["features"]["sets"]
