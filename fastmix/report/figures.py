"""Section 6: the figures (``fastmix.report.plots``): OOD AUROC heatmap, MNIST-C bars, ROC curves
and reliability diagrams, written as PNGs into ``<out>/plots/``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fastmix.errors import DataError
from fastmix.evaluate.results import load_logits
from fastmix.evaluate.sets import MNIST_C_CORRUPTIONS
from fastmix.report.format import (
    Groups,
    agg,
    get,
    seen_any,
    study_titles,
    title,
    vals,
)


def figures_section(
    groups: Groups, run_of: dict[int, Path], out_dir: Path
) -> tuple[list[str], list[Path]]:
    from fastmix.report import plots

    plot_dir = out_dir / "plots"
    id_name, c_name = study_titles(groups)
    lines = ["## 6. Figures", ""]
    made: list[Path] = []
    # values over all runs
    heat = {
        v: {
            n: (np.mean(vals(get(r, "ood", n, "full", "msp", "auroc") for r in runs)), 0.0)
            for n in dict.fromkeys(n for r in runs for n in (r.get("ood") or {}))
            if vals(get(r, "ood", n, "full", "msp", "auroc") for r in runs)
        }
        for v, runs in groups.items()
    }
    seen = {v: {n: bool(seen_any(runs, n)) for n in heat[v]} for v, runs in groups.items()}
    if any(heat.values()):
        made.append(plots.plot_auroc_heatmap(heat, plot_dir / "ood_auroc_heatmap.png", seen))
        lines += [
            "OOD AUROC (MSP, full sets; mean over runs), variant x set:",
            "",
            "![OOD AUROC heatmap](plots/ood_auroc_heatmap.png)",
            "",
        ]
    mc, clean = {}, {}
    for v, runs in groups.items():
        per = {}
        for c in MNIST_C_CORRUPTIONS:
            a = agg(get(r, "mnist_c", "per_corruption", c) for r in runs)
            if a:
                per[c] = (a[0], a[1])
        if per:
            mc[title(v)] = per
            a = agg(get(r, "clean", "test_accuracy") for r in runs)
            clean[title(v)] = (a[0], a[1])
    if mc:
        made.append(plots.plot_mnist_c_bars(mc, plot_dir / "mnist_c.png", clean=clean))
        lines += [
            f"{c_name} accuracy per corruption (error bars: std over runs):",
            "",
            f"![{c_name} per corruption](plots/mnist_c.png)",
            "",
        ]
    # logits-based figures: the first run (lowest seed) of each variant
    first: dict[str, tuple[dict[str, Any], dict]] = {}
    missing = []
    for v, runs in groups.items():
        path = run_of[id(runs[0])]
        try:
            first[v] = (runs[0], load_logits(path))
        except DataError:
            missing.append(path.name)
    if first:
        id_set = get(next(iter(first.values()))[0], "clean", "test_set") or "mnist_test"
        run_logits = {title(v): {n: z for n, (z, _) in lg.items()} for v, (_, lg) in first.items()}
        ood_sets = list(dict.fromkeys(n for r, _ in first.values() for n in (r.get("ood") or {})))
        if ood_sets:
            seen_roc = {
                title(v): {
                    n: bool(get(r, "ood", n, "seen_in_training")) for n in (r.get("ood") or {})
                }
                for v, (r, _) in first.items()
            }
            made.append(
                plots.plot_roc(
                    run_logits, plot_dir / "roc_msp.png", ood_sets, "msp", id_set, seen_roc
                )
            )
            lines += [
                "ROC curves, MSP (first run of each variant; dashed = seen in training):",
                "",
                "![ROC curves](plots/roc_msp.png)",
                "",
            ]
        entries = {}
        for v, (r, lg) in first.items():
            if id_set in lg and get(r, "calibration", "temperature"):
                z, y = lg[id_set]
                entries[title(v)] = (z, y, float(r["calibration"]["temperature"]))
        if entries:
            made.append(plots.plot_reliability(entries, plot_dir / "reliability.png"))
            lines += [
                f"Reliability diagrams on {id_name} test, before / after temperature scaling "
                "(first run of each variant):",
                "",
                "![Reliability diagrams](plots/reliability.png)",
                "",
            ]
    if missing:
        lines += [f"No logits.npz in {', '.join(missing)}: their curves are omitted.", ""]
    return lines, made
