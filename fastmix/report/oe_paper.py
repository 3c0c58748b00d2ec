"""The Outlier Exposure paper's MNIST table beside fastmix's (Hendrycks, Mazeika & Dietterich,
"Deep Anomaly Detection with Outlier Exposure", ICLR 2019; the numbers its repository
hendrycks/outlier-exposure prints in ``MNIST/snapshots/baseline_test.txt`` and
``oe_scratch_test.txt``): MSP, FPR@95 / AUROC / AUPR (OOD positive) on the OOD sets both have,
with the OE protocol (2,000 OOD against the whole test set, mean of 10 draws), and the test
error. fastmix's cells are ``mean ± std`` over the runs (seeds) of each model.

Not the same sets in every row: the paper's Omniglot is 15 "safe" background alphabets of
``omniglot.mat``, inverted, resized with ``scipy.misc.imresize`` and fed as 0..255 (not divided
by 255); fastmix's is the ``images_background_small`` zips as 28x28 white-on-black images in
[0, 1]. The paper's OE model trained on 80 Million Tiny Images (withdrawn); fastmix's +OE runs
train on Fashion-MNIST, so their Fashion-MNIST row is not held-out detection ("seen").
"""

from __future__ import annotations

from typing import Any

from fastmix.report.format import PM, agg, get, seen_any, split_by_model, table

# (FPR95, AUROC, AUPR) in percent, MSP; "baseline" and "OE from scratch"
OE_PAPER: dict[str, dict[str, tuple[float, float, float]]] = {
    "baseline": {
        "fmnist_test": (2.96, 99.31, 96.31),
        "notmnist_test": (16.64, 96.04, 84.89),
        "omniglot": (14.81, 96.23, 83.85),
        "gaussian_noise": (0.21, 99.96, 99.81),
        "bernoulli_noise": (1.04, 99.81, 99.01),
        "mnist_inverted": (5.20, 98.55, 91.91),
    },
    "oe": {
        "fmnist_test": (0.38, 99.92, 99.61),
        "notmnist_test": (6.44, 98.60, 94.22),
        "omniglot": (16.48, 95.86, 82.44),
        "gaussian_noise": (0.00, 100.00, 100.00),
        "bernoulli_noise": (0.00, 100.00, 100.00),
        "mnist_inverted": (0.18, 99.95, 99.76),
    },
}
OE_PAPER_TEST_ERROR = {"baseline": 0.94, "oe": 1.03}
SET_NAMES = {
    "fmnist_test": "Fashion-MNIST",
    "notmnist_test": "notMNIST",
    "omniglot": "Omniglot",
    "gaussian_noise": "Gaussian noise",
    "bernoulli_noise": "Bernoulli noise",
    "mnist_inverted": "Negative MNIST",
}
METRICS = ("fpr95", "auroc", "aupr_out")


def _cell(runs: list[dict[str, Any]], ood_set: str) -> str:
    parts = []
    for m in METRICS:
        a = agg(get(r, "ood", ood_set, "draws", "msp", "mean", m) for r in runs)
        if a is None:
            return "n/a"
        mean, std, n = a
        parts.append(f"{100 * mean:.2f}" + (f" {PM} {100 * std:.2f}" if n > 1 else ""))
    return " / ".join(parts) + (" (seen)" if seen_any(runs, ood_set) else "")


def _paper(row: tuple[float, float, float]) -> str:
    return " / ".join(f"{v:.2f}" for v in row)


def oe_paper_section(results: list[dict[str, Any]]) -> list[str]:
    """The comparison table, one column pair per model with base (and base_oe) runs."""
    mnist = [r for r in results if get(r, "clean", "test_set") == "mnist_test"]
    by_model = {
        tag: runs
        for tag, runs in split_by_model(mnist).items()
        if any(r.get("variant") == "base" for r in runs)
    }
    if not by_model:
        return []
    lines = [
        "## The Outlier Exposure paper's MNIST table beside fastmix's",
        "",
        "MSP; FPR@95 / AUROC / AUPR (OOD positive), percent; the OE protocol (2,000 OOD "
        "images against the whole MNIST test set, mean over 10 draws); fastmix: "
        f"mean {PM} std over seeds. Paper: Hendrycks, Mazeika & Dietterich, ICLR 2019 "
        "(its repository's printed MNIST results). The rows' Omniglot sets differ (see "
        "the notes below the table).",
        "",
    ]
    header = ["OOD set", "OE paper, baseline"]
    cols = []
    for tag, runs in by_model.items():
        base = [r for r in runs if r.get("variant") == "base"]
        oe = [r for r in runs if r.get("variant") == "base_oe"]
        header.append(f"fastmix base, {tag} ({len(base)})")
        cols.append(base)
        if oe:
            header.append(f"fastmix base_oe, {tag} ({len(oe)})")
            cols.append(oe)
    header.append("OE paper, OE from scratch")
    rows = []
    for name, title in SET_NAMES.items():
        rows.append(
            [
                title,
                _paper(OE_PAPER["baseline"][name]),
                *[_cell(c, name) for c in cols],
                _paper(OE_PAPER["oe"][name]),
            ]
        )
    err = []
    for c in cols:
        a = agg(
            None
            if get(r, "clean", "test_accuracy") is None
            else 1 - get(r, "clean", "test_accuracy")
            for r in c
        )
        err.append(
            "–"
            if a is None
            else f"{100 * a[0]:.2f}" + (f" {PM} {100 * a[1]:.2f}" if a[2] > 1 else "")
        )
    rows.append(
        [
            "test error (%)",
            f"{OE_PAPER_TEST_ERROR['baseline']:.2f}",
            *err,
            f"{OE_PAPER_TEST_ERROR['oe']:.2f}",
        ]
    )
    lines += table(header, rows)
    lines += [
        '- Omniglot: the paper\'s set is 15 "safe" background alphabets of `omniglot.mat`, '
        "inverted, resized with `scipy.misc.imresize` and fed as 0..255 (never divided by "
        "255); fastmix's is the `images_background_small` zips, 28x28 white on black in "
        "[0, 1]. The two rows measure different sets.",
        "- The paper's OE model trained on 80 Million Tiny Images; fastmix's base_oe on "
        'Fashion-MNIST, so its Fashion-MNIST cell is "(seen)", not held out.',
        "- FPR@95: fastmix takes the first threshold whose OOD recall reaches 95%; the "
        "paper's code the threshold whose recall is closest to 95%.",
        "",
    ]
    return lines
