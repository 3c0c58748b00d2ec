"""Section 1: the seed report's tables (S. Sarangi, "MNIST with PixMix and Outlier Exposure",
MLSS 2022 final project report) with fastmix's numbers beside them; every Outlier Exposure
number on the OE source's family is marked "(seen)"."""

from __future__ import annotations

from typing import Any

from fastmix.report.format import (
    VARIANT_ORDER,
    Groups,
    fmt,
    get,
    seen_any,
    study_titles,
    table,
    title,
)

SEED_REPORT: dict[str, Any] = {
    "citation": (
        'S. Sarangi, "MNIST with PixMix and Outlier Exposure", MLSS 2022 final project report '
        "(September 3, 2022), sections 4.1 and 4.2"
    ),
    # percent; the report gives no numbers for the +OE variants in its accuracy table
    "clean_accuracy": {"base": 95.0, "sp": 93.0, "pixmix": 93.0},
    "mnist_c_accuracy": {"base": 82.0, "sp": 73.0, "pixmix": 80.0},
    # AUROC (%) [ood set][score][variant]; FMNIST was also its OE training set (a leak)
    "auroc": {
        "fmnist_test": {
            "msp": {
                "base": 99.71,
                "base_oe": 99.99,
                "sp": 97.86,
                "sp_oe": 98.47,
                "pixmix": 99.99,
                "pixmix_oe": 99.99,
            },
            "xent": {
                "base": 99.97,
                "base_oe": 100.00,
                "sp": 99.92,
                "sp_oe": 99.93,
                "pixmix": 100.0,
                "pixmix_oe": 100.0,
            },
        },
        "kmnist_test": {
            "msp": {
                "base": 99.42,
                "base_oe": 99.84,
                "sp": 97.75,
                "sp_oe": 98.21,
                "pixmix": 99.96,
                "pixmix_oe": 99.99,
            },
            "xent": {
                "base": 99.90,
                "base_oe": 99.96,
                "sp": 99.87,
                "sp_oe": 99.91,
                "pixmix": 100.0,
                "pixmix_oe": 100.0,
            },
        },
    },
}
_SET_TITLE = {"fmnist_test": "FMNIST", "kmnist_test": "KMNIST"}
_SCORE_TITLE = {"msp": "MSP", "xent": "xent"}


def seed_report_section(groups: Groups) -> list[str]:
    """The seed report's MNIST tables beside fastmix's (MNIST studies only)."""
    if study_titles(groups)[0] != "MNIST":
        return []
    ref = SEED_REPORT
    cols = list(VARIANT_ORDER)
    lines = [
        "## 1. The seed report's tables, with fastmix's numbers beside them",
        "",
        f'"seed report" rows: {ref["citation"]}. "fastmix" rows: this study. The seed '
        "report's models were under-trained (a 2-conv net reaches 99%+ on MNIST) and its "
        "MNIST-C table counts 16 corruptions (identity included, apparently); fastmix "
        "uses the 15.",
        "",
        "### (a) Clean and MNIST-C accuracy (%)",
        "",
    ]

    def fm(v: str, *path: str) -> str:
        if v not in groups:
            return "not run"
        return fmt(get(r, *path) for r in groups[v])

    def sr(table: str, v: str) -> str:
        x = ref[table].get(v)
        return f"{x:.0f}" if x is not None else "–"

    rows = [
        ["clean accuracy — seed report", *[sr("clean_accuracy", v) for v in cols]],
        ["clean accuracy — fastmix", *[fm(v, "clean", "test_accuracy") for v in cols]],
        ["MNIST-C accuracy — seed report", *[sr("mnist_c_accuracy", v) for v in cols]],
        ["MNIST-C accuracy — fastmix", *[fm(v, "mnist_c", "mean") for v in cols]],
        ["MNIST-C drop from clean — fastmix", *[fm(v, "mnist_c", "drop") for v in cols]],
    ]
    lines += table(["", *[title(v) for v in cols]], rows)
    lines += [
        "### (b) OOD detection AUROC (%)",
        "",
        "fastmix: the whole OOD test set against the whole MNIST test set (OE-protocol "
        'draws in section 3). "(seen)" = that OOD family was the model\'s Outlier '
        "Exposure training source (the seed report's +OE models were trained on "
        "Fashion-MNIST too), so the number is not held-out detection.",
        "",
    ]
    rows = []
    for ood_set, by_score in ref["auroc"].items():
        for score, by_variant in by_score.items():
            name = f"{_SET_TITLE[ood_set]}, {_SCORE_TITLE[score]}"
            # the seed report trained every +OE model on Fashion-MNIST: its FMNIST +OE cells leak
            leak = ood_set == "fmnist_test"
            rows.append(
                [
                    f"{name} — seed report",
                    *[
                        f"{by_variant[v]:.2f}" + (" (seen)" if leak and v.endswith("_oe") else "")
                        if v in by_variant
                        else "–"
                        for v in cols
                    ],
                ]
            )
            cells = []
            for v in cols:
                runs = groups.get(v)
                if not runs:
                    cells.append("not run")
                    continue
                have = [r for r in runs if get(r, "ood", ood_set) is not None]
                if not have:
                    cells.append("n/a (not available)")
                    continue
                if get(have[0], "ood", ood_set, "full", score) is None:
                    cells.append("n/a (score not evaluated)")
                    continue
                cell = fmt(get(r, "ood", ood_set, "full", score, "auroc") for r in have)
                cells.append(cell + (" (seen)" if seen_any(have, ood_set) else ""))
            rows.append([f"{name} — fastmix", *cells])
    lines += table(["AUROC", *[title(v) for v in cols]], rows)
    return lines
