"""The variants x models ablation: does a finding hold across architectures?

One row per (model, variant): clean accuracy, the -C mean, and the mean MSP AUROC over the OOD
sets that every run of the report evaluated and none saw in training (so every row averages the
same sets), ``mean ± std`` over seeds. Shown when the report's runs use more than one model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fastmix.report.format import VARIANT_ORDER, agg, fmt, get, split_by_model, table, title


def _held_out_everywhere(results: list[dict[str, Any]]) -> list[str]:
    names = dict.fromkeys(n for r in results for n in (r.get("ood") or {}))
    return [
        n
        for n in names
        if all(
            get(r, "ood", n) is not None and not r["ood"][n]["seen_in_training"] for r in results
        )
    ]


def ablation_section(results: list[dict[str, Any]]) -> list[str]:
    by_model = split_by_model(results)
    if len(by_model) < 2:
        return []
    sets = _held_out_everywhere(results)
    lines = [
        "## Ablation: the variants across models",
        "",
        f"Held-out OOD: mean MSP AUROC over {', '.join(sets) or 'no common set'} (the sets "
        "every run evaluated and none saw in training). Percent, mean ± std over seeds "
        "(n = runs).",
        "",
    ]
    rows = []
    for tag, runs in by_model.items():
        variants = [v for v in VARIANT_ORDER if any(r.get("variant") == v for r in runs)]
        for v in variants:
            rs = [r for r in runs if r.get("variant") == v]
            ood = [
                float(np.mean([r["ood"][n]["full"]["msp"]["auroc"] for n in sets]))
                if sets
                else None
                for r in rs
            ]
            a = agg(ood)
            rows.append(
                [
                    tag,
                    title(v),
                    len(rs),
                    fmt(get(r, "clean", "test_accuracy") for r in rs),
                    fmt(get(r, "mnist_c", "mean") for r in rs),
                    fmt(ood) if a is not None else "–",
                ]
            )
    lines += table(
        ["model (presets)", "variant", "n", "clean", "-C mean", "held-out OOD AUROC"], rows
    )
    return lines
