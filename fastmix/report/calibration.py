"""Sections 4 and 5: calibration before / after temperature scaling (T fitted on validation;
Guo et al. 2017), also with OOD samples counted as wrong (OE protocol), and error detection."""

from __future__ import annotations

from fastmix.report.format import (
    Groups,
    fmt,
    get,
    seen_any,
    status,
    study_titles,
    table,
    title,
)


def calibration_section(groups: Groups) -> list[str]:
    lines = [
        f"## 4. Calibration ({study_titles(groups)[0]} test; %, NLL in nats)",
        "",
        "T is fitted on the validation split (never on test). before = T 1, after = "
        "softmax(z / T).",
        "",
    ]
    mets = ("ece", "mce", "rms", "nll", "brier")
    rows = []
    for v, runs in groups.items():
        row = [title(v), fmt((get(r, "calibration", "temperature") for r in runs), 1.0, 3)]
        for m in mets:
            scale, dig = (1.0, 4) if m in ("nll", "brier") else (100.0, 2)
            for when in ("before", "after"):
                row.append(fmt((get(r, "calibration", "test", when, m) for r in runs), scale, dig))
        rows.append(row)
    hdr = ["variant", "T"] + [
        f"{m.upper() if m != 'brier' else 'Brier'} {w}" for m in mets for w in ("before", "after")
    ]
    lines += table(hdr, rows)
    lines += ["### With OOD samples in the test set (OE protocol: OOD = wrong prediction)", ""]
    rows = []
    for v, runs in groups.items():
        sets = list(
            dict.fromkeys(n for r in runs for n in (get(r, "calibration", "with_ood") or {}))
        )
        for n in sets:
            have = [r for r in runs if get(r, "calibration", "with_ood", n) is not None]
            rows.append(
                [
                    title(v),
                    n,
                    status(seen_any(have, n)),
                    *[
                        fmt(get(r, "calibration", "with_ood", n, w, m) for r in have)
                        for m in ("ece", "rms")
                        for w in ("before", "after")
                    ],
                ]
            )
        rows.append(
            [
                title(v),
                "**mean over held-out sets**",
                "held out",
                *[
                    fmt(get(r, "calibration", "with_ood_held_out_mean", w, m) for r in runs)
                    for m in ("ece", "rms")
                    for w in ("before", "after")
                ],
            ]
        )
    lines += table(
        ["variant", "OOD set", "status", "ECE before", "ECE after", "RMS before", "RMS after"], rows
    )
    return lines


def error_detection_section(groups: Groups) -> list[str]:
    scores = list(
        dict.fromkeys(
            s
            for runs in groups.values()
            for r in runs
            for s in (get(r, "error_detection", "auroc") or {})
        )
    )
    id_name = study_titles(groups)[0]
    lines = [
        f"## 5. Error detection (wrong vs correct on {id_name} test; AUROC %, wrong positive)",
        "",
    ]
    rows = []
    for v, runs in groups.items():
        rows.append(
            [
                title(v),
                fmt((get(r, "error_detection", "n_wrong") for r in runs), 1.0, 1),
                *[fmt(get(r, "error_detection", "auroc", s) for r in runs) for s in scores],
            ]
        )
    lines += table(["variant", "wrong predictions", *scores], rows)
    return lines
