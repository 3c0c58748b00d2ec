"""A Fashion-MNIST study end to end through the CLI (``--config fmnist``): real betons of the
official files, the six variants trained in one job, evaluated on FMNIST-C and on MNIST (now
OOD: seen in training by the +OE runs, whose outliers are MNIST) and reported under the
in-distribution set's name."""

from __future__ import annotations

import json

import pytest

from fastmix.cli import main
from fastmix.config import VARIANTS

SETS = (
    "fmnist_train,fmnist_val,fmnist_test,mnist_train,mnist_test,fractals,gaussian_noise,"
    "fmnist_c/stripe,fmnist_c/translate"
)
EVAL = [
    "--set",
    "eval.ood_sets=['mnist_test', 'gaussian_noise']",
    "--set",
    "eval.n_ood=200",
    "--set",
    "eval.n_draws=2",
    "--set",
    "eval.scores=['msp', 'energy']",
    "--set",
    "eval.features=false",
]


@pytest.fixture(scope="module")
def study(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("fmnist")
    data, runs = root / "data", root / "runs"
    assert (
        main(
            [
                "convert",
                "--raw",
                str(shared_data),
                "--out",
                str(data),
                "--only",
                SETS,
                "--corrupt",
                "fmnist_test",
                "--fractals",
                "64",
                "--offline",
                "--no-progress",
                "--cache",
                str(root / "cache"),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "train",
                "--variant",
                "all",
                "--config",
                "fmnist",
                "--config",
                "smoke",
                "--data",
                str(data),
                "--out",
                str(runs),
                "--no-progress",
                *EVAL,
            ]
        )
        == 0
    )
    dirs = [str(runs / f"{v}-s0") for v in VARIANTS]
    assert (
        main(["report", *dirs, "--data", str(data), "--out", str(root / "report"), "--no-progress"])
        == 0
    )
    results = {v: json.loads((runs / f"{v}-s0" / "results.json").read_text()) for v in VARIANTS}
    return results, (root / "report" / "report.md").read_text()


def test_six_variants_train_and_evaluate_on_fashion_mnist(study):
    results, _ = study
    for v, r in results.items():
        assert r["clean"]["test_set"] == "fmnist_test" and r["clean"]["val_set"] == "fmnist_val"
        assert 0.0 <= r["clean"]["test_accuracy"] <= 1.0
        assert r["mnist_c"]["set"] == "fmnist_c"
        assert set(r["mnist_c"]["per_corruption"]) == {"stripe", "translate"}
        assert r["config"]["oe"]["source"] == "mnist_train"
        seen = r["ood"]["mnist_test"]["seen_in_training"]
        assert seen == v.endswith("_oe"), v  # OE on MNIST: MNIST's test set is not held out
        assert not r["ood"]["gaussian_noise"]["seen_in_training"]


def test_report_is_titled_by_the_in_distribution_set(study):
    _, md = study
    assert md.startswith("# fastmix report: Fashion-MNIST robustness")
    assert "## 2. Fashion-MNIST-C accuracy per corruption (%)" in md
    assert "| clean (Fashion-MNIST test) |" in md
    assert "## 4. Calibration (Fashion-MNIST test;" in md
    assert "## 5. Error detection (wrong vs correct on Fashion-MNIST test;" in md
    assert "MNIST test;" not in md.replace("Fashion-MNIST test;", "")
    assert "The seed report's tables" not in md  # they are MNIST's
    assert "Outlier Exposure paper's MNIST table" not in md
