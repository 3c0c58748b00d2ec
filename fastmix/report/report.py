"""``report.md`` from evaluated runs: the seed report's tables with fastmix's numbers beside
them, then MNIST-C per corruption, OOD detection per set and score (every row labelled "seen
in training" or "held out"), calibration before / after temperature scaling, error detection,
and the figures of :mod:`fastmix.report.plots` (relative links into ``<out>/plots/``).

Runs are grouped by variant (``config [variant] name``); with several runs (seeds) of one
variant every number is ``mean ± std`` over the runs (sample std, ddof = 1).  With a single
run, the OE-protocol columns show ``mean ± std`` over the draws instead (stated in the report).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from fastmix.errors import DataError
from fastmix.evaluate.results import CONVENTION, load_logits, load_results
from fastmix.evaluate.sets import MNIST_C_CORRUPTIONS
from fastmix.files import atomic_write
from fastmix.report.detectors import detector_section

__all__ = ["SEED_REPORT", "VARIANT_ORDER", "write_report"]

VARIANT_ORDER = ("base", "base_oe", "sp", "sp_oe", "pixmix", "pixmix_oe")
VARIANT_TITLE = {"base": "Base", "base_oe": "Base+OE", "sp": "S&P", "sp_oe": "S&P+OE",
                 "pixmix": "PixMix", "pixmix_oe": "PixMix+OE"}

SEED_REPORT: dict[str, Any] = {
    "citation": (
        "S. Sarangi, \"MNIST with PixMix and Outlier Exposure\", MLSS 2022 final project report "
        "(September 3, 2022), sections 4.1 and 4.2; numbers as transcribed in the project's "
        "REFERENCE.md (\"The report this project reproduces\")"
    ),
    # percent; the report gives no numbers for the +OE variants in its accuracy table
    "clean_accuracy": {"base": 95.0, "sp": 93.0, "pixmix": 93.0},
    "mnist_c_accuracy": {"base": 82.0, "sp": 73.0, "pixmix": 80.0},
    # AUROC (%) [ood set][score][variant]; FMNIST was also its OE training set (a leak)
    "auroc": {
        "fmnist_test": {
            "msp": {"base": 99.71, "base_oe": 99.99, "sp": 97.86, "sp_oe": 98.47,
                    "pixmix": 99.99, "pixmix_oe": 99.99},
            "xent": {"base": 99.97, "base_oe": 100.00, "sp": 99.92, "sp_oe": 99.93,
                     "pixmix": 100.0, "pixmix_oe": 100.0},
        },
        "kmnist_test": {
            "msp": {"base": 99.42, "base_oe": 99.84, "sp": 97.75, "sp_oe": 98.21,
                    "pixmix": 99.96, "pixmix_oe": 99.99},
            "xent": {"base": 99.90, "base_oe": 99.96, "sp": 99.87, "sp_oe": 99.91,
                     "pixmix": 100.0, "pixmix_oe": 100.0},
        },
    },
}
_SET_TITLE = {"fmnist_test": "FMNIST", "kmnist_test": "KMNIST"}
_SCORE_TITLE = {"msp": "MSP", "xent": "xent"}

PM = "±"


# ----------------------------------------------------------------------------- aggregation


def _vals(xs: Iterable[Any]) -> list[float]:
    return [float(x) for x in xs if x is not None]


def _agg(xs: Iterable[Any]) -> tuple[float, float, int] | None:
    v = _vals(xs)
    if not v:
        return None
    return float(np.mean(v)), (float(np.std(v, ddof=1)) if len(v) > 1 else 0.0), len(v)


def _fmt(xs: Iterable[Any], scale: float = 100.0, digits: int = 2, empty: str = "–") -> str:
    """``mean ± std`` (several values) or the value (one), times ``scale``."""
    a = _agg(xs)
    if a is None:
        return empty
    m, s, n = a
    if n == 1:
        return f"{m * scale:.{digits}f}"
    return f"{m * scale:.{digits}f} {PM} {s * scale:.{digits}f}"


def _get(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def _group(results: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault(r.get("variant", "custom"), []).append(r)
    order = [v for v in VARIANT_ORDER if v in groups] + sorted(set(groups) - set(VARIANT_ORDER))
    return {v: sorted(groups[v], key=lambda r: (r.get("seed", 0), r.get("run", ""))) for v in order}


def _title(v: str) -> str:
    return VARIANT_TITLE.get(v, v)


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out + [""]


def _seen_any(runs: list[dict[str, Any]], ood_set: str) -> bool | None:
    flags = {bool(_get(r, "ood", ood_set, "seen_in_training")) for r in runs
             if _get(r, "ood", ood_set) is not None}
    if not flags:
        return None
    return True in flags


def _status(seen: bool | None) -> str:
    return "n/a" if seen is None else ("**seen in training**" if seen else "held out")


# ----------------------------------------------------------------------------- sections


def _header(groups: dict[str, list[dict[str, Any]]], runs: list[tuple[Path, dict]]) -> list[str]:
    lines = ["# fastmix report: MNIST robustness, OOD detection and calibration", "",
             f"Generated {datetime.now(UTC).isoformat(timespec='seconds')} from "
             f"{len(runs)} run(s) of {len(groups)} variant(s).", ""]
    lines += _table(
        ["run", "variant", "train seed", "checkpoint", "inference"],
        [(p.name, r.get("variant"), r.get("seed"), r.get("which"),
          f"{_get(r, 'inference', 'device')} {_get(r, 'inference', 'precision')}")
         for p, r in runs])
    origins = sorted({_get(r, "mnist_c", "origin_label") or "not available" for _, r in runs})
    scores = {}
    for _, r in runs:
        scores.update(_get(r, "convention", "scores") or {})
    lines += ["## Conventions", "",
              f"- **OOD is the positive class**; {CONVENTION['text_scores']}. Tables show "
              "percent (NLL and Brier as they are).",
              f"- FPR95: {CONVENTION['fpr95']}.",
              "- AUPR-In: average precision with ID positive and the score negated; AUPR-Out: "
              "with OOD positive.",
              "- Scores (anomaly, higher = more anomalous):"]
    lines += [f"  - `{k}`: {v}" for k, v in scores.items()]
    lines += [f"- OOD detection, *full*: {CONVENTION['full']}. *OE protocol*: "
              f"{CONVENTION['draws']}.",
              "- **Seen in training** marks an OOD set whose distribution family equals the "
              "Outlier Exposure source's (the seed report trained OE on Fashion-MNIST and tested "
              "on Fashion-MNIST: that number is not OOD generalisation). Everything else is "
              "*held out*.",
              f"- MNIST-C: {'; '.join(origins)}. Score: accuracy per corruption and the plain "
              "mean over the 15 corruptions (Mu & Gilmer 2019).",
              f"- Calibration: {CONVENTION['calibration']}.",
              f"- `a {PM} b`: mean {PM} sample std over the runs (seeds) of a variant; a bare "
              "number comes from one run. OE-protocol columns of a single run show mean "
              f"{PM} std over the draws.", ""]
    return lines


def _comparison(groups: dict[str, list[dict[str, Any]]]) -> list[str]:
    ref = SEED_REPORT
    cols = list(VARIANT_ORDER)
    lines = ["## 1. The seed report's tables, with fastmix's numbers beside them", "",
             f"\"seed report\" rows: {ref['citation']}. \"fastmix\" rows: this study. The seed "
             "report's models were under-trained (a 2-conv net reaches 99%+ on MNIST) and its "
             "MNIST-C table counts 16 corruptions (identity included, apparently); fastmix "
             "uses the 15.", "",
             "### (a) Clean and MNIST-C accuracy (%)", ""]

    def fm(v: str, *path: str) -> str:
        if v not in groups:
            return "not run"
        return _fmt(_get(r, *path) for r in groups[v])

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
    lines += _table(["", *[_title(v) for v in cols]], rows)
    lines += ["### (b) OOD detection AUROC (%)", "",
              "fastmix: the whole OOD test set against the whole MNIST test set (OE-protocol "
              "draws in section 3). \"(seen)\" = that OOD family was the model's Outlier "
              "Exposure training source (the seed report's +OE models were trained on "
              "Fashion-MNIST too), so the number is not held-out detection.", ""]
    rows = []
    for ood_set, by_score in ref["auroc"].items():
        for score, by_variant in by_score.items():
            name = f"{_SET_TITLE[ood_set]}, {_SCORE_TITLE[score]}"
            # the seed report trained every +OE model on Fashion-MNIST: its FMNIST +OE cells leak
            leak = ood_set == "fmnist_test"
            rows.append([f"{name} — seed report", *[
                f"{by_variant[v]:.2f}" + (" (seen)" if leak and v.endswith("_oe") else "")
                if v in by_variant else "–" for v in cols]])
            cells = []
            for v in cols:
                runs = groups.get(v)
                if not runs:
                    cells.append("not run")
                    continue
                have = [r for r in runs if _get(r, "ood", ood_set) is not None]
                if not have:
                    cells.append("n/a (not available)")
                    continue
                if _get(have[0], "ood", ood_set, "full", score) is None:
                    cells.append("n/a (score not evaluated)")
                    continue
                cell = _fmt(_get(r, "ood", ood_set, "full", score, "auroc") for r in have)
                cells.append(cell + (" (seen)" if _seen_any(have, ood_set) else ""))
            rows.append([f"{name} — fastmix", *cells])
    lines += _table(["AUROC", *[_title(v) for v in cols]], rows)
    return lines


def _mnist_c(groups: dict[str, list[dict[str, Any]]]) -> list[str]:
    variants = list(groups)
    lines = ["## 2. MNIST-C accuracy per corruption (%)", ""]
    corr = [c for c in MNIST_C_CORRUPTIONS
            if any(_get(r, "mnist_c", "per_corruption", c) is not None
                   for runs in groups.values() for r in runs)]
    if not corr:
        return lines + ["MNIST-C not available: build it with `fastmix convert`.", ""]
    rows = [["clean (MNIST test)", *[_fmt(_get(r, "clean", "test_accuracy") for r in groups[v])
                                     for v in variants]]]
    for c in corr:
        cells = []
        for v in variants:
            cell = _fmt(_get(r, "mnist_c", "per_corruption", c) for r in groups[v])
            sp = any(_get(r, "config", "augment", "kind") == "sp" for r in groups[v])
            cells.append(cell + (" †" if c == "impulse_noise" and sp else ""))
        rows.append([c, *cells])
    rows.append([f"**mean over {len(corr)}**",
                 *[_fmt(_get(r, "mnist_c", "mean") for r in groups[v]) for v in variants]])
    rows.append(["drop from clean",
                 *[_fmt(_get(r, "mnist_c", "drop") for r in groups[v]) for v in variants]])
    lines += _table(["corruption", *[_title(v) for v in variants]], rows)
    lines += ["† trained with salt-and-pepper noise: MNIST-C impulse_noise is salt-and-pepper "
              "(amount 0.17), so that corruption was seen in training.", ""]
    if len(corr) < len(MNIST_C_CORRUPTIONS):
        missing = [c for c in MNIST_C_CORRUPTIONS if c not in corr]
        lines += [f"Incomplete: missing {', '.join(missing)}; the mean is over {len(corr)}.", ""]
    return lines


def _draw_cell(runs: list[dict[str, Any]], ood_set: str, score: str, metric: str) -> str:
    if len(runs) == 1:
        m = _get(runs[0], "ood", ood_set, "draws", score, "mean", metric)
        s = _get(runs[0], "ood", ood_set, "draws", score, "std", metric)
        if m is None:
            return "–"
        return f"{100 * m:.2f} {PM} {100 * (s or 0.0):.2f}"
    return _fmt(_get(r, "ood", ood_set, "draws", score, "mean", metric) for r in runs)


def _ood(groups: dict[str, list[dict[str, Any]]]) -> list[str]:
    lines = ["## 3. OOD detection per set and score (%)", "",
             "Every row says whether its OOD distribution was **seen in training** (Outlier "
             "Exposure source family) or held out.", ""]
    # summary: mean AUROC over the sets that EVERY run evaluated and none saw in training, so
    # the columns compare variants on the same sets (OE runs would otherwise drop their source)
    all_runs = [r for runs in groups.values() for r in runs]
    common = [n for n in dict.fromkeys(n for r in all_runs for n in (r.get("ood") or {}))
              if all(_get(r, "ood", n) is not None and not r["ood"][n]["seen_in_training"]
                     for r in all_runs)]
    scores = list(dict.fromkeys(s for r in all_runs for e in (r.get("ood") or {}).values()
                                for s in e["full"]))
    lines += ["### Mean AUROC over the OOD sets held out by every model (full sets)", ""]
    if common:
        lines += [f"Sets: {', '.join(common)} (comparable across variants).", ""]
        rows = [[_title(v), *[_fmt(np.mean([r["ood"][n]["full"][s]["auroc"] for n in common])
                                   if all(s in r["ood"][n]["full"] for n in common) else None
                                   for r in runs) for s in scores]]
                for v, runs in groups.items()]
        lines += _table(["variant", *scores], rows)
    else:
        lines += ["No OOD set was evaluated and held out by every model.", ""]
    for v, runs in groups.items():
        lines += [f"### {_title(v)} ({len(runs)} run{'s' if len(runs) > 1 else ''})", ""]
        sets = list(dict.fromkeys(n for r in runs for n in (r.get("ood") or {})))
        rows = []
        for n in sets:
            have = [r for r in runs if _get(r, "ood", n) is not None]
            status = _status(_seen_any(have, n))
            for s in _get(have[0], "ood", n, "full") or {}:
                rows.append([n, status, s, *[
                    _fmt(_get(r, "ood", n, "full", s, m) for r in have)
                    for m in ("auroc", "aupr_in", "aupr_out", "fpr95")],
                    _draw_cell(have, n, s, "auroc"), _draw_cell(have, n, s, "fpr95")])
        if rows:
            lines += _table(["OOD set", "status", "score", "AUROC", "AUPR-In", "AUPR-Out",
                             "FPR95", "AUROC (OE draws)", "FPR95 (OE draws)"], rows)
        reasons = sorted({e["seen_reason"] for r in runs for e in (r.get("ood") or {}).values()
                          if e["seen_in_training"]})
        lines += [f"- {x}" for x in reasons]
        unavailable = sorted({n for r in runs for n in (r.get("ood_unavailable") or {})})
        if unavailable:
            lines += [f"- not available (not evaluated): {', '.join(unavailable)}"]
        lines += [""]
    return lines


def _calibration(groups: dict[str, list[dict[str, Any]]]) -> list[str]:
    lines = ["## 4. Calibration (MNIST test; %, NLL in nats)", "",
             "T is fitted on the validation split (never on test). before = T 1, after = "
             "softmax(z / T).", ""]
    mets = ("ece", "mce", "rms", "nll", "brier")
    rows = []
    for v, runs in groups.items():
        row = [_title(v), _fmt((_get(r, "calibration", "temperature") for r in runs), 1.0, 3)]
        for m in mets:
            scale, dig = (1.0, 4) if m in ("nll", "brier") else (100.0, 2)
            for when in ("before", "after"):
                row.append(_fmt((_get(r, "calibration", "test", when, m) for r in runs),
                                scale, dig))
        rows.append(row)
    hdr = ["variant", "T"] + [f"{m.upper() if m != 'brier' else 'Brier'} {w}"
                              for m in mets for w in ("before", "after")]
    lines += _table(hdr, rows)
    lines += ["### With OOD samples in the test set (OE protocol: OOD = wrong prediction)", ""]
    rows = []
    for v, runs in groups.items():
        sets = list(dict.fromkeys(n for r in runs for n in
                                  (_get(r, "calibration", "with_ood") or {})))
        for n in sets:
            have = [r for r in runs if _get(r, "calibration", "with_ood", n) is not None]
            rows.append([_title(v), n, _status(_seen_any(have, n)), *[
                _fmt(_get(r, "calibration", "with_ood", n, w, m) for r in have)
                for m in ("ece", "rms") for w in ("before", "after")]])
        rows.append([_title(v), "**mean over held-out sets**", "held out", *[
            _fmt(_get(r, "calibration", "with_ood_held_out_mean", w, m) for r in runs)
            for m in ("ece", "rms") for w in ("before", "after")]])
    lines += _table(["variant", "OOD set", "status", "ECE before", "ECE after", "RMS before",
                     "RMS after"], rows)
    return lines


def _error_detection(groups: dict[str, list[dict[str, Any]]]) -> list[str]:
    scores = list(dict.fromkeys(s for runs in groups.values() for r in runs
                                for s in (_get(r, "error_detection", "auroc") or {})))
    lines = ["## 5. Error detection (wrong vs correct on MNIST test; AUROC %, wrong positive)",
             ""]
    rows = []
    for v, runs in groups.items():
        rows.append([_title(v), _fmt((_get(r, "error_detection", "n_wrong") for r in runs),
                                     1.0, 1),
                     *[_fmt(_get(r, "error_detection", "auroc", s) for r in runs)
                       for s in scores]])
    lines += _table(["variant", "wrong predictions", *scores], rows)
    return lines


# ----------------------------------------------------------------------------- figures


def _figures(groups: dict[str, list[dict[str, Any]]], run_of: dict[int, Path],
             out_dir: Path) -> tuple[list[str], list[Path]]:
    from fastmix.report import plots

    plot_dir = out_dir / "plots"
    lines = ["## 6. Figures", ""]
    made: list[Path] = []
    # values over all runs
    heat = {v: {n: (np.mean(_vals(_get(r, "ood", n, "full", "msp", "auroc") for r in runs)),
                    0.0)
                for n in dict.fromkeys(n for r in runs for n in (r.get("ood") or {}))
                if _vals(_get(r, "ood", n, "full", "msp", "auroc") for r in runs)}
            for v, runs in groups.items()}
    seen = {v: {n: bool(_seen_any(runs, n)) for n in heat[v]} for v, runs in groups.items()}
    if any(heat.values()):
        made.append(plots.plot_auroc_heatmap(heat, plot_dir / "ood_auroc_heatmap.png", seen))
        lines += ["OOD AUROC (MSP, full sets; mean over runs), variant x set:", "",
                  "![OOD AUROC heatmap](plots/ood_auroc_heatmap.png)", ""]
    mc, clean = {}, {}
    for v, runs in groups.items():
        per = {}
        for c in MNIST_C_CORRUPTIONS:
            a = _agg(_get(r, "mnist_c", "per_corruption", c) for r in runs)
            if a:
                per[c] = (a[0], a[1])
        if per:
            mc[_title(v)] = per
            a = _agg(_get(r, "clean", "test_accuracy") for r in runs)
            clean[_title(v)] = (a[0], a[1])
    if mc:
        made.append(plots.plot_mnist_c_bars(mc, plot_dir / "mnist_c.png", clean=clean))
        lines += ["MNIST-C accuracy per corruption (error bars: std over runs):", "",
                  "![MNIST-C per corruption](plots/mnist_c.png)", ""]
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
        id_set = _get(next(iter(first.values()))[0], "clean", "test_set") or "mnist_test"
        run_logits = {_title(v): {n: z for n, (z, _) in lg.items()} for v, (_, lg) in
                      first.items()}
        ood_sets = list(dict.fromkeys(n for r, _ in first.values() for n in (r.get("ood") or {})))
        if ood_sets:
            seen_roc = {_title(v): {n: bool(_get(r, "ood", n, "seen_in_training"))
                                    for n in (r.get("ood") or {})} for v, (r, _) in first.items()}
            made.append(plots.plot_roc(run_logits, plot_dir / "roc_msp.png", ood_sets, "msp",
                                       id_set, seen_roc))
            lines += ["ROC curves, MSP (first run of each variant; dashed = seen in training):",
                      "", "![ROC curves](plots/roc_msp.png)", ""]
        entries = {}
        for v, (r, lg) in first.items():
            if id_set in lg and _get(r, "calibration", "temperature"):
                z, y = lg[id_set]
                entries[_title(v)] = (z, y, float(r["calibration"]["temperature"]))
        if entries:
            made.append(plots.plot_reliability(entries, plot_dir / "reliability.png"))
            lines += ["Reliability diagrams on MNIST test, before / after temperature scaling "
                      "(first run of each variant):", "",
                      "![Reliability diagrams](plots/reliability.png)", ""]
    if missing:
        lines += [f"No logits.npz in {', '.join(missing)}: their curves are omitted.", ""]
    return lines, made


def _notes(groups: dict[str, list[dict[str, Any]]]) -> list[str]:
    lines = ["## Notes", ""]
    for v, runs in groups.items():
        notes = list(dict.fromkeys(n for r in runs for n in (r.get("notes") or [])))
        if notes:
            lines += [f"**{_title(v)}**", ""] + [f"- {n}" for n in notes] + [""]
    return lines


# ----------------------------------------------------------------------------- entry point


def write_report(run_dirs: Sequence[str | os.PathLike], out_dir: str | os.PathLike) -> Path:
    """Write ``<out_dir>/report.md`` (and ``<out_dir>/plots/*.png``) for evaluated runs.

    Each run needs ``results.json`` (``fastmix eval``); ``logits.npz`` adds the ROC and
    reliability figures.  Raises DataError for a missing run or results file.  Returns the
    path of report.md (written atomically).
    """
    if not run_dirs:
        raise DataError("no runs given to report on")
    runs: list[tuple[Path, dict[str, Any]]] = []
    for rd in run_dirs:
        p = Path(rd)
        if not p.is_dir():
            raise DataError(f"{p}: run directory not found")
        runs.append((p, load_results(p)))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = [r for _, r in runs]
    run_of = {id(r): p for p, r in runs}
    groups = _group(results)
    lines = _header(groups, runs) + _comparison(groups) + _mnist_c(groups) + _ood(groups)
    lines += detector_section(groups)
    lines += _calibration(groups) + _error_detection(groups)
    fig_lines, _ = _figures(groups, run_of, out)
    lines += fig_lines + _notes(groups)
    return atomic_write(out / "report.md", "\n".join(lines).rstrip() + "\n")
