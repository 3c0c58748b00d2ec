"""The report's detector x variant table: do post-hoc detectors on a plain model match what
training-time methods (Outlier Exposure, PixMix) buy?

Every score of ``eval.scores`` (the logit scores and the post-hoc detectors of
:mod:`fastmix.evaluate.detectors`) is a row, every variant a column; a cell is the mean AUROC
and FPR@95 over the OOD sets that every run evaluated and none saw in training (Outlier
Exposure source family), ``mean ± std`` over the runs (seeds) of a variant. The sets left out
are listed with the variants that saw them. A short reading compares the plain model's best
post-hoc detector with the training-time variants' MSP.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = ["MATCH_POINTS", "detector_section"]

MATCH_POINTS = 0.5  # AUROC points within which a detector "matches" another number


def _kinds(runs: list[dict[str, Any]], scores: Sequence[str]) -> dict[str, str]:
    """What each post-hoc detector among ``scores`` uses (``features + head``, ...): as the
    runs' results.json recorded it, else from the detector registry; logit scores are left
    out."""
    from fastmix.evaluate.detectors import DETECTORS

    out: dict[str, str] = {}
    for s in scores:
        recorded = [(r.get("detectors") or {}).get(s) or {} for r in runs]
        uses = next((d["uses"] for d in recorded if d.get("uses")), None)
        if uses is None and s in DETECTORS:
            uses = DETECTORS[s].kind
        elif uses is None and any(recorded):
            uses = "features"
        if uses is not None:
            out[s] = uses
    return out


_PLAIN = "base"  # the variant without augmentation or Outlier Exposure


def _mean_std(xs: Iterable[float | None]) -> tuple[float, float, int] | None:
    v = [float(x) for x in xs if x is not None]
    if not v:
        return None
    return float(np.mean(v)), (float(np.std(v, ddof=1)) if len(v) > 1 else 0.0), len(v)


def _pct(a: tuple[float, float, int] | None) -> str:
    if a is None:
        return "–"
    m, s, n = a
    return f"{100 * m:.2f}" if n == 1 else f"{100 * m:.2f} ± {100 * s:.2f}"


def _held_out_common(
    runs: list[dict[str, Any]],
) -> tuple[list[str], dict[str, list[str]], list[str]]:
    """The OOD sets every run evaluated and none saw in training; the sets some run saw, with
    the variants that saw them; the sets some run did not evaluate."""
    names = list(dict.fromkeys(n for r in runs for n in (r.get("ood") or {})))
    common, seen_by, partial = [], {}, []
    for n in names:
        entries = [(r, (r.get("ood") or {}).get(n)) for r in runs]
        seen = sorted(
            {
                r.get("variant", "custom")
                for r, e in entries
                if e is not None and e["seen_in_training"]
            }
        )
        if seen:
            seen_by[n] = seen
        elif any(e is None for _, e in entries):
            partial.append(n)
        else:
            common.append(n)
    return common, seen_by, partial


def _run_mean(r: dict[str, Any], score: str, metric: str, sets: Sequence[str]) -> float | None:
    vals = [(((r.get("ood") or {}).get(n) or {}).get("full") or {}).get(score) for n in sets]
    if not sets or any(v is None or v.get(metric) is None for v in vals):
        return None
    return float(np.mean([v[metric] for v in vals]))


def _reading(
    groups: dict[str, list[dict[str, Any]]],
    scores: list[str],
    sets: list[str],
    title: dict[str, str],
    kinds: dict[str, str],
) -> list[str]:
    """Where the plain model's best post-hoc detector matches or beats the training-time
    variants' MSP, and where it does not (``kinds``: the post-hoc detectors among
    ``scores``)."""
    posthoc = [s for s in scores if s in kinds]
    if _PLAIN not in groups or not posthoc or not sets:
        return []
    auroc = {
        (v, s): _mean_std(_run_mean(r, s, "auroc", sets) for r in runs)
        for v, runs in groups.items()
        for s in scores
    }
    have = [s for s in posthoc if auroc[(_PLAIN, s)] is not None]
    if not have:
        return []
    best = max(have, key=lambda s: auroc[(_PLAIN, s)][0])
    b = auroc[(_PLAIN, best)][0]
    lines = [
        f'Reading (mean AUROC over the sets above; "matches" = within {MATCH_POINTS:g} points):',
        "",
    ]
    base_msp = auroc.get((_PLAIN, "msp"))
    lines.append(
        f"- On {title.get(_PLAIN, _PLAIN)}, the best post-hoc detector is `{best}` "
        f"({100 * b:.2f})"
        + (f", against {100 * base_msp[0]:.2f} for MSP on the same model." if base_msp else ".")
    )
    for v in [v for v in groups if v != _PLAIN]:
        other = auroc.get((v, "msp"))
        if v not in groups or other is None:
            continue
        diff = 100 * (b - other[0])
        verdict = (
            "beats"
            if diff > MATCH_POINTS
            else "matches"
            if diff >= -MATCH_POINTS
            else "does not match"
        )
        lines.append(
            f"- {title.get(v, v)} with MSP: {100 * other[0]:.2f}; `{best}` on "
            f"{title.get(_PLAIN, _PLAIN)} {verdict} it ({diff:+.2f} points)."
        )
        gain = [
            s
            for s in posthoc
            if auroc.get((v, s)) is not None and auroc[(v, s)][0] > other[0] + MATCH_POINTS / 100
        ]
        if gain:
            lines.append(
                f"  On {title.get(v, v)} itself, {', '.join(f'`{s}`' for s in gain)} "
                "improve on its MSP."
            )
    return lines + [""]


def detector_section(groups: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Markdown lines: the detector x variant table of held-out mean AUROC / FPR@95 (%) and
    its reading. ``groups``: variant -> its runs' results.json dicts (the report's grouping).
    """
    from fastmix.report.format import VARIANT_TITLE

    runs = [r for rs in groups.values() for r in rs]
    scores = list(
        dict.fromkeys(s for r in runs for e in (r.get("ood") or {}).values() for s in e["full"])
    )
    lines = ["### Post-hoc detectors against training-time methods (held-out OOD sets)", ""]
    kinds = _kinds(runs, scores)
    if not kinds:
        return lines + ["No post-hoc detector was evaluated (`eval.scores`).", ""]
    sets, seen_by, partial = _held_out_common(runs)
    if not sets:
        return lines + ["No OOD set was evaluated and held out by every model.", ""]
    title = {v: VARIANT_TITLE.get(v, v) for v in groups}
    lines += [
        f"Mean over the OOD sets every model held out: {', '.join(sets)}. Cells: AUROC / "
        "FPR95 (%, OOD positive); mean ± std over runs where a variant has several."
    ]
    if seen_by:
        lines.append(
            "Left out as **seen in training**: "
            + "; ".join(
                f"{n} (by {', '.join(title.get(v, v) for v in vs)})" for n, vs in seen_by.items()
            )
            + "."
        )
    if partial:
        lines.append(f"Left out as not evaluated by every run: {', '.join(partial)}.")
    odin_sub = {
        e["subsets"]["odin"]["n_ood"]
        for r in runs
        for e in (r.get("ood") or {}).values()
        if "odin" in (e.get("subsets") or {})
    }
    if odin_sub:
        lines.append(
            f"`odin` is scored on seeded subsets (up to {max(odin_sub)} images per set, "
            "ID test included)."
        )
    lines.append("")
    rows = []
    for s in scores:
        cells = []
        for rs in groups.values():
            au = _mean_std(_run_mean(r, s, "auroc", sets) for r in rs)
            fpr = _mean_std(_run_mean(r, s, "fpr95", sets) for r in rs)
            cells.append("–" if au is None else f"{_pct(au)} / {_pct(fpr)}")
        rows.append([f"`{s}`", kinds.get(s, "logits"), *cells])
    header = ["score", "uses", *[title[v] for v in groups]]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows] + [""]
    return lines + _reading(groups, scores, sets, title, kinds)
