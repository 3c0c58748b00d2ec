"""Report sections across models, from real smoke runs: the Outlier Exposure paper's MNIST table
beside fastmix's (``fastmix.report.oe_paper``) and the variants x models ablation
(``fastmix.report.ablation``)."""

from __future__ import annotations

import numpy as np
import pytest

from fastmix.config import load_config
from fastmix.evaluate.evaluate import evaluate_run
from fastmix.evaluate.results import load_results
from fastmix.report.oe_paper import OE_PAPER
from fastmix.report.report import write_report
from fastmix.train.trainer import RunRequest, train_runs

EVAL = [
    "eval.scores=['msp']",
    "eval.features=false",
    "eval.n_ood=200",
    "eval.n_draws=2",
    "eval.ood_sets=['fmnist_test', 'gaussian_noise']",
    "train.max_steps=20",
]


@pytest.fixture(scope="module")
def runs(data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    specs = {
        "paper-base": ("base", ["oe_paper", "smoke"]),
        "lenet-base": ("base", ["lenet", "smoke"]),
        "lenet-base_oe": ("base_oe", ["lenet", "smoke"]),
    }
    requests = [
        RunRequest(load_config(v, presets, [f"data.dir='{data_dir}'", *EVAL]), root / name)
        for name, (v, presets) in specs.items()
    ]
    train_runs(requests, progress=False)
    cache: dict = {}
    for r in requests:
        evaluate_run(r.run_dir, data_dir, cache, progress=False)
    out = root / "report"
    write_report([r.run_dir for r in requests], out)
    return {n: load_results(root / n) for n in specs}, (out / "report.md").read_text()


def _row(md: str, label: str) -> list[str]:
    line = next(ln for ln in md.splitlines() if ln.startswith(f"| {label} |"))
    return [c.strip() for c in line.strip("|").split("|")][1:]


def _triple(r: dict, ood_set: str) -> str:
    d = r["ood"][ood_set]["draws"]["msp"]["mean"]
    return " / ".join(f"{100 * d[m]:.2f}" for m in ("fpr95", "auroc", "aupr_out"))


def test_oe_paper_table_puts_each_models_runs_beside_the_published_numbers(runs):
    res, md = runs
    header = next(ln for ln in md.splitlines() if ln.startswith("| OOD set | OE paper"))
    assert "fastmix base, lenet w8 (lenet) (1)" in header
    assert "fastmix base_oe, lenet w8 (lenet) (1)" in header
    assert "fastmix base, lenet_oe (oe_paper) (1)" in header
    row = _row(md, "Gaussian noise")
    assert row[0] == "0.21 / 99.96 / 99.81" and row[-1] == "0.00 / 100.00 / 100.00"
    cols = [c.strip() for c in header.strip("|").split("|")][2:-1]
    for col, cell in zip(cols, row[1:-1], strict=True):
        name = {
            "fastmix base, lenet w8 (lenet) (1)": "lenet-base",
            "fastmix base_oe, lenet w8 (lenet) (1)": "lenet-base_oe",
            "fastmix base, lenet_oe (oe_paper) (1)": "paper-base",
        }[col]
        assert cell == _triple(res[name], "gaussian_noise")
    fm = _row(md, "Fashion-MNIST")
    assert fm[0] == " / ".join(f"{v:.2f}" for v in OE_PAPER["baseline"]["fmnist_test"])
    assert fm[cols.index("fastmix base_oe, lenet w8 (lenet) (1)") + 1].endswith("(seen)")
    assert _row(md, "notMNIST")[1] == "n/a"  # not evaluated in this study
    err = _row(md, "test error (%)")
    assert err[0] == "0.94" and err[-1] == "1.03"
    paper_col = cols.index("fastmix base, lenet_oe (oe_paper) (1)") + 1
    assert err[paper_col] == f"{100 * (1 - res['paper-base']['clean']['test_accuracy']):.2f}"


def test_ablation_rows_cover_every_model_and_variant(runs):
    res, md = runs
    assert "## Ablation: the variants across models" in md
    assert "Sections 1-6 cover the main model, lenet w8 (lenet)" in md
    rows = {(r[0], r[1]): r for r in (_row(md, t) for t in ("lenet w8 (lenet)",))}
    assert rows  # the first lenet row exists
    lines = [ln for ln in md.split("## Ablation")[1].splitlines() if ln.startswith("| lenet")]
    tags = {tuple(c.strip() for c in ln.strip("|").split("|")[:2]) for ln in lines}
    assert tags == {
        ("lenet w8 (lenet)", "Base"),
        ("lenet w8 (lenet)", "Base+OE"),
        ("lenet_oe (oe_paper)", "Base"),
    }
    paper = next(ln for ln in lines if ln.startswith("| lenet_oe"))
    cells = [c.strip() for c in paper.strip("|").split("|")]
    r = res["paper-base"]
    assert cells[3] == f"{100 * r['clean']['test_accuracy']:.2f}"
    held = np.mean([r["ood"]["gaussian_noise"]["full"]["msp"]["auroc"]])  # fmnist: seen by OE
    assert cells[5] == f"{100 * held:.2f}"
