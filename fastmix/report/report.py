"""``report.md`` from evaluated runs: the seed report's tables with fastmix's numbers beside
them (``seed_report``), accuracy per corruption (``robustness``), OOD detection per set and
score, every row labelled "seen in training" or "held out" (``ood``), post-hoc detectors
(``detectors``), calibration and error detection (``calibration``), the figures (``figures``),
the Outlier Exposure paper's MNIST table beside fastmix's (``oe_paper``) and, when the runs
cover several models, the variants x models ablation (``ablation``).

Runs are grouped by variant (``config [variant] name``); with several runs (seeds) of one
variant every number is ``mean ± std`` over the runs (sample std, ddof = 1). With a single run,
the OE-protocol columns show ``mean ± std`` over the draws instead (stated in the report).
When the runs use several models, the per-variant sections cover the main model (the one with
most runs) and the ablation covers them all.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastmix.errors import DataError
from fastmix.evaluate.results import CONVENTION, load_results
from fastmix.files import atomic_write
from fastmix.report.ablation import ablation_section
from fastmix.report.calibration import calibration_section, error_detection_section
from fastmix.report.detectors import detector_section
from fastmix.report.figures import figures_section
from fastmix.report.format import (
    PM,
    Groups,
    get,
    group_by_variant,
    split_by_model,
    study_titles,
    table,
    title,
)
from fastmix.report.oe_paper import oe_paper_section
from fastmix.report.ood import ood_section
from fastmix.report.robustness import robustness_section
from fastmix.report.seed_report import seed_report_section

__all__ = ["write_report"]


def _header(groups: Groups, runs: list[tuple[Path, dict]]) -> list[str]:
    id_name, c_name = study_titles(groups)
    lines = [
        f"# fastmix report: {id_name} robustness, OOD detection and calibration",
        "",
        f"Generated {datetime.now(UTC).isoformat(timespec='seconds')} from "
        f"{len(runs)} run(s) of {len(groups)} variant(s).",
        "",
    ]
    lines += table(
        ["run", "variant", "train seed", "checkpoint", "inference"],
        [
            (
                p.name,
                r.get("variant"),
                r.get("seed"),
                r.get("which"),
                f"{get(r, 'inference', 'device')} {get(r, 'inference', 'precision')}",
            )
            for p, r in runs
        ],
    )
    origins = sorted({get(r, "mnist_c", "origin_label") or "not available" for _, r in runs})
    scores = {}
    for _, r in runs:
        scores.update(get(r, "convention", "scores") or {})
    lines += [
        "## Conventions",
        "",
        f"- **OOD is the positive class**; {CONVENTION['text_scores']}. Tables show "
        "percent (NLL and Brier as they are).",
        f"- FPR95: {CONVENTION['fpr95']}.",
        "- AUPR-In: average precision with ID positive and the score negated; AUPR-Out: "
        "with OOD positive.",
        "- Scores (anomaly, higher = more anomalous):",
    ]
    lines += [f"  - `{k}`: {v}" for k, v in scores.items()]
    lines += [
        f"- OOD detection, *full*: {CONVENTION['full']}. *OE protocol*: {CONVENTION['draws']}.",
        "- **Seen in training** marks an OOD set whose distribution family equals the "
        "Outlier Exposure source's (the seed report trained OE on Fashion-MNIST and tested "
        "on Fashion-MNIST: that number is not OOD generalisation). Everything else is "
        "*held out*.",
        f"- {c_name}: {'; '.join(origins)}. Score: accuracy per corruption and the plain "
        "mean over the 15 corruptions (Mu & Gilmer 2019).",
        f"- Calibration: {CONVENTION['calibration']}.",
        f"- `a {PM} b`: mean {PM} sample std over the runs (seeds) of a variant; a bare "
        "number comes from one run. OE-protocol columns of a single run show mean "
        f"{PM} std over the draws.",
        "",
    ]
    return lines


def _model_note(models: dict[str, list[dict[str, Any]]]) -> list[str]:
    tags = list(models)
    if len(tags) == 1:
        return [f"Model: {tags[0]}.", ""]
    return [
        f"Models: {', '.join(f'{t} ({len(r)} runs)' for t, r in models.items())}. Sections "
        f"1-6 cover the main model, {tags[0]}; the ablation covers every model.",
        "",
    ]


def _notes(groups: Groups) -> list[str]:
    lines = ["## Notes", ""]
    for v, runs in groups.items():
        notes = list(dict.fromkeys(n for r in runs for n in (r.get("notes") or [])))
        if notes:
            lines += [f"**{title(v)}**", ""] + [f"- {n}" for n in notes] + [""]
    return lines


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
    models = split_by_model(results)
    main = next(iter(models.values()))
    # a model evaluated with fastmix.evaluate_model stands beside the main model's variants
    main = main + [r for r in results if r.get("source") == "external" and r not in main]
    groups = group_by_variant(main)
    lines = _header(groups, runs) + _model_note(models)
    lines += seed_report_section(groups) + robustness_section(groups)
    lines += ood_section(groups) + detector_section(groups)
    lines += calibration_section(groups) + error_detection_section(groups)
    fig_lines, _ = figures_section(groups, run_of, out)
    lines += fig_lines + oe_paper_section(results) + ablation_section(results) + _notes(groups)
    return atomic_write(out / "report.md", "\n".join(lines).rstrip() + "\n")
