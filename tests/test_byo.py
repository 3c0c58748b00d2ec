"""Bring your own model, augmentation, detector and recipe: the examples through the plugin
points (``tests/byo_plugin``), ``fastmix.evaluate_model`` on a model built here against a
plain numpy / scikit-learn computation, the registries' one-line errors, entry-point plugins,
recipes as named variants, and every config fault refused before anything is written."""

from __future__ import annotations

import copy
import json
import pickle
import sys

import numpy as np
import pytest
import torch
from fastmix.converters.beton import read_beton, write_beton
from sklearn.metrics import roc_auc_score

import fastmix
from fastmix.augment.spec import Augmentation, view_seed
from fastmix.cli import main
from fastmix.config import load_config
from fastmix.data.loader import make_train_loader
from fastmix.errors import ConfigError
from fastmix.evaluate.external import load_factory
from fastmix.registry import RegistryError, load_plugins
from fastmix.train.run_dir import run_dir_for
from tests import byo_plugin
from tests.conftest import SHARED_DATA, link_betons

SETS = ("mnist_train", "mnist_val", "mnist_test", "fmnist_test")
ONE_OOD = ['eval.ood_sets=["fmnist_test"]', "eval.n_draws=1"]


def _beton_path(data, name: str):
    return data / json.loads((data / "manifest.json").read_text())["betons"][name]["file"]


def test_plugin_run_trains_evaluates_and_reports_them_under_their_names(data_dir, tmp_path):
    data = link_betons(data_dir, tmp_path / "data", SETS)
    out = tmp_path / "runs"
    code = main(
        ["run", "--plugin", "tests.byo_plugin", "--variants", f"base,{byo_plugin.RECIPE}"]
        + ["--config", "smoke", "--data", str(data), "--out", str(out), "--offline"]
        + ["--raw", str(SHARED_DATA), "--only", ",".join(SETS), "--fractals", "64", "--no-progress"]
        + ["--set", 'eval.scores=["msp", "energy", "cosine"]', "--set", ONE_OOD[0]]
    )
    assert code == 0
    res = json.loads((out / "byo-s0" / "results.json").read_text())
    assert res["variant"] == "byo" and res["config"]["model"]["name"] == "mlp"
    assert res["config"]["augment"] == {"kind": "cutout", "cutout_size": 6, **_builtin_params()}
    assert res["detectors"]["cosine"]["uses"] == "features"
    assert set(res["ood"]["fmnist_test"]["full"]) == {"msp", "energy", "cosine"}
    report = (out / "report" / "report.md").read_text()
    assert "| byo |" in report.replace("`", "") or " byo " in report
    assert "| `cosine` | features |" in report
    assert (out / "base-s0" / "results.json").is_file()


def _builtin_params() -> dict:
    cfg = load_config("base")
    return {k: v for k, v in cfg["augment"].items() if k != "kind"}


def test_the_plugin_augmentation_through_the_real_loader_is_its_kernel(tmp_path):
    from fastmix_plugin_my_augmentation import cutout_batch

    g = np.random.default_rng(0)
    images = g.integers(1, 256, (48, 28, 28), dtype=np.uint8)  # no zero pixel: cut ones show
    write_beton(tmp_path / "t.beton", images, np.arange(48, dtype=np.int64))
    aug = Augmentation("cutout", cutout_size=6)
    loader = make_train_loader(tmp_path / "t.beton", aug, 16, seed=3)
    loader.set_epoch(2)
    batches = [(a.clone(), b.clone()) for a, b in loader]
    x, y = (torch.cat(t).numpy() for t in zip(*batches, strict=True))
    want = np.empty((len(y), 28, 28), np.float32)
    cutout_batch(images[y], y.astype(np.int64), want, view_seed(3, aug), 2, 6)
    np.testing.assert_array_equal(x[:, 0], want)
    cut = (x[:, 0] == 0).sum(axis=(1, 2))
    assert cut.min() >= 9 and cut.max() <= 36  # a 3x3 to 6x6 square (clipped at the border)
    assert pickle.loads(pickle.dumps(aug)) == aug and hash(copy.deepcopy(aug)) == hash(aug)
    with pytest.raises(ConfigError, match=r"cutout_size must lie in \[1, 28\], got 40"):
        Augmentation("cutout", cutout_size=40)
    with pytest.raises(ConfigError, match=r"augment.cutout_size must lie in \[1, 28\]"):
        load_config("base", [], ['augment.kind="cutout"', "augment.cutout_size=0"])


class _Net(torch.nn.Module):
    """A model fastmix does not know: no forward_features, the head is the last Linear."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.trunk = torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(784, 24), torch.nn.Tanh()
        )
        self.out = torch.nn.Linear(24, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 3.0 * self.out(self.trunk(x))  # not the last Linear's output: the hook must cope


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_evaluate_model_equals_a_plain_numpy_sklearn_computation(data_dir, tmp_path):
    data = link_betons(data_dir, tmp_path / "data", SETS)
    scores = 'eval.scores=["msp", "energy", "mahalanobis"]'
    cfg = load_config(None, ["smoke"], [*ONE_OOD, scores])
    model = _Net()
    res = fastmix.evaluate_model(model, data, out=tmp_path / "my_net", config=cfg)
    assert res["run"] == "my_net" and res["variant"] == "my_net" and res["source"] == "external"
    assert res["features"]["source"] == "input of the last nn.Linear (out), by a forward hook"
    saved = json.loads((tmp_path / "my_net" / "results.json").read_text())
    assert saved["clean"] == res["clean"] and saved["format"] == res["format"]

    def forward(name):
        x, y = read_beton(_beton_path(data, name))
        with torch.no_grad():
            t = torch.from_numpy(x).float()[:, None] / 255
            return model(t).double().numpy(), model.trunk(t).double().numpy(), y

    z_id, f_id, y_id = forward("mnist_test")
    z_ood, f_ood, _ = forward("fmnist_test")
    assert res["clean"]["test_accuracy"] == pytest.approx(np.mean(z_id.argmax(1) == y_id))
    truth = np.r_[np.zeros(len(z_id)), np.ones(len(z_ood))]
    msp = -_softmax(np.r_[z_id, z_ood]).max(1)
    lse = np.logaddexp.reduce(np.r_[z_id, z_ood], axis=1)
    full = res["ood"]["fmnist_test"]["full"]
    assert full["msp"]["auroc"] == pytest.approx(roc_auc_score(truth, msp), abs=1e-9)
    assert full["energy"]["auroc"] == pytest.approx(roc_auc_score(truth, -lse), abs=1e-9)
    # Mahalanobis on the stored training subset (float16 features), in plain numpy
    feats = np.load(tmp_path / "my_net" / "features.npz")
    f, y = feats["features/train"].astype(np.float64), feats["labels/train"]
    means = np.stack([f[y == c].mean(0) for c in range(10)])
    cov = np.cov((f - means[y]).T, bias=True)
    q = np.r_[f_id, f_ood].astype(np.float16).astype(np.float64)
    d = q[:, None, :] - means[None]
    maha = np.einsum("ncf,fg,ncg->nc", d, np.linalg.pinv(cov), d).min(1)
    auroc = roc_auc_score(truth, maha)
    assert full["mahalanobis"]["auroc"] == pytest.approx(auroc, abs=2e-4)
    report = fastmix.report([tmp_path / "my_net"], out=tmp_path / "rep")
    assert "my_net" in report.read_text()


def test_registry_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(RegistryError) as e:
        fastmix.register_model("lenet")(lambda: None)
    assert str(e.value) == "duplicate model 'lenet': already registered by fastmix.train.models"
    with pytest.raises(RegistryError, match=r"unknown model 'resnet'; valid: convnet, "):
        fastmix.train.models.build_model("resnet")
    bad = tmp_path / "bad_plugin.py"
    bad.write_text("import fastmix\nraise RuntimeError('boom\\nsecond line')\n")
    with pytest.raises(RegistryError) as e:
        load_plugins([str(bad)])
    assert str(e.value) == f"plugin '{bad}' failed to import: RuntimeError: boom"
    with pytest.raises(RegistryError, match="plugin 'no_such_mod' failed to import: Module"):
        load_plugins(["no_such_mod"])
    out = tmp_path / "runs"
    assert main(["train", "--plugin", "no_such_mod", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fastmix train: error: plugin 'no_such_mod'") and "\n" not in err
    assert not out.exists()


def test_entry_point_plugins_are_loaded(tmp_path, monkeypatch):
    (tmp_path / "ep_plugin_mod.py").write_text(
        "import fastmix\n\n@fastmix.register_loss('ep_loss')\n"
        "def loss(logits, labels, n_in, cfg):\n    raise NotImplementedError\n"
    )
    dist = tmp_path / "ep_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[fastmix.plugins]\nep = ep_plugin_mod\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "ep_plugin_mod" in load_plugins()
    cfg = load_config("base", [], ['train.loss="ep_loss"'])
    assert cfg["train"]["loss"] == "ep_loss" and "ep_plugin_mod" in cfg["variant"]["plugins"]


def test_a_recipe_file_is_a_named_variant(data_dir, tmp_path):
    plain = tmp_path / "my_method.toml"
    plain.write_text('[augment]\nkind = "sp"\nsp_amount = 0.2\n')
    cfg = load_config(str(plain), [], ["train.seed=3"])
    assert cfg["variant"]["name"] == "my_method" and cfg["augment"]["sp_amount"] == 0.2
    assert run_dir_for(tmp_path, cfg) == tmp_path / "my_method-s3"
    runs = fastmix.train(str(plain), data_dir, out=tmp_path / "runs", seeds=[3], config=["smoke"])
    assert runs == [tmp_path / "runs" / "my_method-s3"] and (runs[0] / "done.json").is_file()
    named = tmp_path / "x.toml"
    named.write_text('[variant]\nname = "noisy"\n[augment]\nkind = "sp"\n')
    assert load_config(str(named))["variant"]["name"] == "noisy"
    with pytest.raises(ConfigError, match="unknown variant 'mixup'; valid: base, base_oe"):
        load_config("mixup")
    with pytest.raises(ConfigError, match="recipe file not found"):
        load_config(str(tmp_path / "none.toml"))


@pytest.mark.parametrize(
    "args, match",
    [
        (["--set", 'eval.scores=["msp", "bogus"]'], "eval.scores: unknown score(s) 'bogus'"),
        (["--set", 'model.name="resnet"'], "model.name: unknown model 'resnet'"),
        (["--set", "augment.pixmix_k=65"], r"augment.pixmix_k must lie in \[0, 64\]"),
        (["--set", 'train.loss="focal"'], "train.loss: unknown training loss 'focal'"),
        (["--plugin", "examples/none.py"], "plugin 'examples/none.py' failed to import"),
        (["--variant", "examples/none.toml"], "recipe file not found"),
    ],
)
def test_every_config_fault_is_refused_before_anything_is_written(tmp_path, capsys, args, match):
    out = tmp_path / "runs"
    assert main(["train", *args, "--out", str(out), "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert match.replace("\\", "") in err and err.count("\n") == 1
    assert not out.exists()


def test_examples_are_one_file_each():
    from fastmix.augment.kinds import AUGMENTATIONS
    from fastmix.evaluate.detectors import DETECTORS
    from fastmix.train.models import MODELS

    origin = {
        "mlp": MODELS._origin["mlp"],
        "cutout": AUGMENTATIONS._origin["cutout"],
        "cosine": DETECTORS._origin["cosine"],
    }
    assert origin == {
        "mlp": "fastmix_plugin_my_model",
        "cutout": "fastmix_plugin_my_augmentation",
        "cosine": "fastmix_plugin_my_detector",
    }
    for f in ("my_model.py", "my_augmentation.py", "my_detector.py"):
        n = len((byo_plugin.EXAMPLES / f).read_text().splitlines())
        assert 30 <= n <= 60, (f, n)
    assert "fastmix_plugin_my_model" in sys.modules


def make_net() -> torch.nn.Module:
    """The ``MODULE:FACTORY`` of the CLI test."""
    return _Net()


def test_cli_eval_of_a_foreign_model_writes_an_evaluated_run(data_dir, tmp_path, capsys):
    data = link_betons(data_dir, tmp_path / "data", SETS)
    ckpt = tmp_path / "net.pt"
    torch.save(make_net().state_dict(), ckpt)
    base = ["eval", "--checkpoint", str(ckpt), "--data", str(data), "--no-progress"]
    sets = ["--config", "smoke", *(x for o in ONE_OOD for x in ("--set", o))]
    factory = tmp_path / "nets.py"
    factory.write_text("import torch\n\ndef make():\n    return torch.nn.Linear(784, 10)\n")
    assert isinstance(load_factory(f"{factory}:make"), torch.nn.Linear)  # a .py path works too
    assert main([*base, "--model", "tests.test_byo:nope", "--out", str(tmp_path / "a")]) == 2
    assert "--model tests.test_byo:nope: AttributeError" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    out = tmp_path / "foreign"
    argv = [*base, *sets, "--set", 'eval.scores=["msp"]', "--set", "eval.features=false"]
    argv += ["--model", "tests.test_byo:make_net"]
    assert main([*argv, "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["run"] == "foreign" and (out / "config.toml").is_file()
    assert (out / "logits.npz").is_file() and list(res["ood"]["fmnist_test"]["full"]) == ["msp"]
