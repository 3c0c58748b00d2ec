"""Section 3: OOD detection per set and score: AUROC, AUPR-In, AUPR-Out, FPR@95 on the full sets
and the Outlier Exposure protocol's draws; every row "seen in training" or "held out"."""

from __future__ import annotations

from typing import Any

import numpy as np

from fastmix.report.format import (
    PM,
    Groups,
    fmt,
    get,
    seen_any,
    status,
    table,
    title,
)


def _draw_cell(runs: list[dict[str, Any]], ood_set: str, score: str, metric: str) -> str:
    if len(runs) == 1:
        m = get(runs[0], "ood", ood_set, "draws", score, "mean", metric)
        s = get(runs[0], "ood", ood_set, "draws", score, "std", metric)
        if m is None:
            return "–"
        return f"{100 * m:.2f} {PM} {100 * (s or 0.0):.2f}"
    return fmt(get(r, "ood", ood_set, "draws", score, "mean", metric) for r in runs)


def ood_section(groups: Groups) -> list[str]:
    lines = [
        "## 3. OOD detection per set and score (%)",
        "",
        "Every row says whether its OOD distribution was **seen in training** (Outlier "
        "Exposure source family) or held out.",
        "",
    ]
    # summary: mean AUROC over the sets that EVERY run evaluated and none saw in training, so
    # the columns compare variants on the same sets (OE runs would otherwise drop their source)
    all_runs = [r for runs in groups.values() for r in runs]
    common = [
        n
        for n in dict.fromkeys(n for r in all_runs for n in (r.get("ood") or {}))
        if all(
            get(r, "ood", n) is not None and not r["ood"][n]["seen_in_training"] for r in all_runs
        )
    ]
    scores = list(
        dict.fromkeys(s for r in all_runs for e in (r.get("ood") or {}).values() for s in e["full"])
    )
    lines += ["### Mean AUROC over the OOD sets held out by every model (full sets)", ""]
    if common:
        lines += [f"Sets: {', '.join(common)} (comparable across variants).", ""]
        rows = [
            [
                title(v),
                *[
                    fmt(
                        np.mean([r["ood"][n]["full"][s]["auroc"] for n in common])
                        if all(s in r["ood"][n]["full"] for n in common)
                        else None
                        for r in runs
                    )
                    for s in scores
                ],
            ]
            for v, runs in groups.items()
        ]
        lines += table(["variant", *scores], rows)
    else:
        lines += ["No OOD set was evaluated and held out by every model.", ""]
    for v, runs in groups.items():
        lines += [f"### {title(v)} ({len(runs)} run{'s' if len(runs) > 1 else ''})", ""]
        sets = list(dict.fromkeys(n for r in runs for n in (r.get("ood") or {})))
        rows = []
        for n in sets:
            have = [r for r in runs if get(r, "ood", n) is not None]
            label = status(seen_any(have, n))
            for s in get(have[0], "ood", n, "full") or {}:
                rows.append(
                    [
                        n,
                        label,
                        s,
                        *[
                            fmt(get(r, "ood", n, "full", s, m) for r in have)
                            for m in ("auroc", "aupr_in", "aupr_out", "fpr95")
                        ],
                        _draw_cell(have, n, s, "auroc"),
                        _draw_cell(have, n, s, "fpr95"),
                    ]
                )
        if rows:
            lines += table(
                [
                    "OOD set",
                    "status",
                    "score",
                    "AUROC",
                    "AUPR-In",
                    "AUPR-Out",
                    "FPR95",
                    "AUROC (OE draws)",
                    "FPR95 (OE draws)",
                ],
                rows,
            )
        reasons = sorted(
            {
                e["seen_reason"]
                for r in runs
                for e in (r.get("ood") or {}).values()
                if e["seen_in_training"]
            }
        )
        lines += [f"- {x}" for x in reasons]
        unavailable = sorted({n for r in runs for n in (r.get("ood_unavailable") or {})})
        if unavailable:
            lines += [f"- not available (not evaluated): {', '.join(unavailable)}"]
        lines += [""]
    return lines
