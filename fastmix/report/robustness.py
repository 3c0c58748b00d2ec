"""Section 2: accuracy per corruption of the in-distribution set's -C set (MNIST-C, Mu & Gilmer
2019: 15 corruptions, plain mean), with the salt-and-pepper / impulse_noise overlap marked."""

from __future__ import annotations

from fastmix.evaluate.sets import MNIST_C_CORRUPTIONS
from fastmix.report.format import (
    Groups,
    fmt,
    get,
    study_titles,
    table,
    title,
)


def robustness_section(groups: Groups) -> list[str]:
    variants = list(groups)
    id_name, c_name = study_titles(groups)
    lines = [f"## 2. {c_name} accuracy per corruption (%)", ""]
    corr = [
        c
        for c in MNIST_C_CORRUPTIONS
        if any(
            get(r, "mnist_c", "per_corruption", c) is not None
            for runs in groups.values()
            for r in runs
        )
    ]
    if not corr:
        return lines + [f"{c_name} not available: build it with `fastmix convert`.", ""]
    rows = [
        [
            f"clean ({id_name} test)",
            *[fmt(get(r, "clean", "test_accuracy") for r in groups[v]) for v in variants],
        ]
    ]
    for c in corr:
        cells = []
        for v in variants:
            cell = fmt(get(r, "mnist_c", "per_corruption", c) for r in groups[v])
            sp = any(get(r, "config", "augment", "kind") == "sp" for r in groups[v])
            cells.append(cell + (" †" if c == "impulse_noise" and sp else ""))
        rows.append([c, *cells])
    rows.append(
        [
            f"**mean over {len(corr)}**",
            *[fmt(get(r, "mnist_c", "mean") for r in groups[v]) for v in variants],
        ]
    )
    rows.append(
        ["drop from clean", *[fmt(get(r, "mnist_c", "drop") for r in groups[v]) for v in variants]]
    )
    lines += table(["corruption", *[title(v) for v in variants]], rows)
    lines += [
        f"† trained with salt-and-pepper noise: {c_name} impulse_noise is salt-and-pepper "
        "(amount 0.17), so that corruption was seen in training.",
        "",
    ]
    if len(corr) < len(MNIST_C_CORRUPTIONS):
        missing = [c for c in MNIST_C_CORRUPTIONS if c not in corr]
        lines += [f"Incomplete: missing {', '.join(missing)}; the mean is over {len(corr)}.", ""]
    return lines
