"""Report figures (matplotlib, Agg canvas, no pyplot state): each function writes one PNG
atomically (rendered in memory, then temporary file + rename) and returns its path.

* :func:`plot_roc` - ROC curves, one panel per OOD set, one curve per run (score MSP default);
  curves of OOD sets seen in training (Outlier Exposure source family) are dashed.
* :func:`plot_reliability` - reliability diagrams before / after temperature scaling
  (Guo et al. 2017: 15 equal-width confidence bins, accuracy per bin against the diagonal).
* :func:`plot_mnist_c_bars` - MNIST-C accuracy per corruption, grouped by variant.
* :func:`plot_auroc_heatmap` - OOD AUROC, variant x OOD set; seen-in-training cells marked.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fastmix.evaluate.calibration import reliability_bins
from fastmix.evaluate.scores import SCORES, softmax
from fastmix.files import atomic_write

__all__ = ["plot_auroc_heatmap", "plot_mnist_c_bars", "plot_reliability", "plot_roc"]

Value = float | tuple[float, float]  # a value, or (mean, std) over seeds


def _save(fig: Figure, path: str | os.PathLike, dpi: int = 110) -> Path:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return atomic_write(path, buf.getvalue())


def _grid(n: int, ncols: int = 4) -> tuple[int, int]:
    ncols = max(1, min(ncols, n))
    return (n + ncols - 1) // ncols, ncols


def _roc(id_scores: np.ndarray, ood_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) of the ROC curve with OOD positive, thresholds at the distinct scores."""
    s = np.concatenate([ood_scores, id_scores]).astype(np.float64)
    y = np.r_[np.ones(len(ood_scores)), np.zeros(len(id_scores))]
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.flatnonzero(np.r_[s[1:] != s[:-1], True])
    tp = np.cumsum(y)[last]
    fp = (last + 1) - tp
    return np.r_[0.0, fp / max(1, len(id_scores))], np.r_[0.0, tp / max(1, len(ood_scores))]


def plot_roc(
    run_logits: dict[str, dict[str, np.ndarray]],
    out_path: str | os.PathLike,
    ood_sets: list[str] | None = None,
    score: str = "msp",
    id_set: str = "mnist_test",
    seen: dict[str, dict[str, bool]] | None = None,
) -> Path:
    """ROC curves (OOD positive) of ``score`` for each OOD set, one curve per run.

    ``run_logits``: run label -> set name -> logits (N, C); every run needs ``id_set``.
    ``ood_sets`` defaults to every set any run has besides the ID ones.  ``seen``: run label
    -> set -> seen in training; seen curves are dashed and labelled "(seen)".
    """
    fn = SCORES[score]
    if ood_sets is None:
        ood_sets = sorted(
            {
                s
                for d in run_logits.values()
                for s in d
                if s != id_set and not s.startswith(("mnist_c/", "mnist_val"))
            }
        )
    nrows, ncols = _grid(max(1, len(ood_sets)), 4)
    fig = Figure(figsize=(3.4 * ncols, 3.2 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    colors = {r: f"C{i % 10}" for i, r in enumerate(run_logits)}
    for ax, name in zip(axes.flat, ood_sets, strict=False):
        for run, sets in run_logits.items():
            if name not in sets or id_set not in sets:
                continue
            fpr, tpr = _roc(fn(sets[id_set]), fn(sets[name]))
            is_seen = bool(seen and seen.get(run, {}).get(name))
            ax.plot(
                fpr,
                tpr,
                color=colors[run],
                lw=1.2,
                ls="--" if is_seen else "-",
                label=f"{run}{' (seen)' if is_seen else ''}",
            )
        ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls=":")
        ax.set_title(f"{name} ({score})", fontsize=9)
        ax.set_xlabel("FPR (ID flagged)", fontsize=8)
        ax.set_ylabel("TPR (OOD caught)", fontsize=8)
        ax.set_xscale("symlog", linthresh=1e-3)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="lower right")
    for ax in list(axes.flat)[len(ood_sets) :]:
        ax.set_visible(False)
    fig.suptitle(f"ROC curves vs {id_set}, OOD positive (x axis symlog)", fontsize=10)
    return _save(fig, out_path)


def plot_reliability(
    entries: dict[str, tuple[np.ndarray, np.ndarray, float]],
    out_path: str | os.PathLike,
    n_bins: int = 15,
) -> Path:
    """Reliability diagrams: one row per entry ``label -> (logits, labels, T)``, columns
    "before" (T = 1) and "after" temperature scaling (``softmax(z / T)``)."""
    nrows = max(1, len(entries))
    fig = Figure(figsize=(6.4, 3.0 * nrows), layout="constrained")
    axes = fig.subplots(nrows, 2, squeeze=False)
    for row, (label, (z, y, t)) in zip(axes, entries.items(), strict=False):
        z = np.asarray(z, np.float64)
        for ax, (when, temp) in zip(row, (("before", 1.0), (f"after T={t:.3f}", t)), strict=True):
            p = softmax(z / temp)
            conf = p.max(axis=1)
            correct = p.argmax(axis=1) == y
            lo, hi, count, acc, mconf = reliability_bins(conf, correct, n_bins)
            m = count > 0
            ece = float(np.sum(count[m] / count.sum() * np.abs(acc[m] - mconf[m])))
            ax.bar(
                lo[m],
                acc[m],
                width=(hi - lo)[m],
                align="edge",
                color="C0",
                edgecolor="k",
                lw=0.4,
                label="accuracy",
            )
            ax.bar(
                lo[m],
                mconf[m] - acc[m],
                bottom=acc[m],
                width=(hi - lo)[m],
                align="edge",
                fill=False,
                edgecolor="C3",
                hatch="///",
                lw=0.6,
                label="gap to confidence",
            )
            ax.plot([0, 1], [0, 1], color="0.4", ls=":", lw=0.8)
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
            ax.set_title(f"{label}, {when}: ECE {100 * ece:.2f}%", fontsize=8)
            ax.set_xlabel("confidence (max softmax)", fontsize=7)
            ax.set_ylabel("accuracy", fontsize=7)
            ax.tick_params(labelsize=7)
        row[0].legend(fontsize=6, loc="upper left")
    fig.suptitle("Reliability diagrams (15 equal-width bins), T fitted on validation", fontsize=9)
    return _save(fig, out_path)


def _mean_std(v: Value) -> tuple[float, float]:
    if isinstance(v, (tuple, list)):
        return float(v[0]), float(v[1])
    return float(v), 0.0


def plot_mnist_c_bars(
    acc: dict[str, dict[str, Value]],
    out_path: str | os.PathLike,
    corruptions: list[str] | None = None,
    clean: dict[str, Value] | None = None,
) -> Path:
    """Grouped bars: MNIST-C accuracy (%) per corruption (x) and variant (colour), error bars
    = std over seeds when values are ``(mean, std)``; ``clean`` adds a "clean" group."""
    if corruptions is None:
        corruptions = list(dict.fromkeys(c for d in acc.values() for c in d))
    groups = (["clean"] if clean else []) + list(corruptions)
    variants = list(acc)
    x = np.arange(len(groups))
    width = 0.8 / max(1, len(variants))
    fig = Figure(figsize=(max(7.0, 0.75 * len(groups) + 2), 4.0), layout="constrained")
    ax = fig.subplots()
    for i, v in enumerate(variants):
        vals = [
            (clean or {}).get(v, np.nan) if g == "clean" else acc[v].get(g, np.nan) for g in groups
        ]
        ms = np.array([_mean_std(val) for val in vals]) * 100
        ax.bar(
            x + (i - (len(variants) - 1) / 2) * width,
            ms[:, 0],
            width,
            yerr=ms[:, 1],
            label=v,
            color=f"C{i % 10}",
            capsize=1.5,
            error_kw={"lw": 0.6},
        )
    ax.set_xticks(x)
    ax.set_xticklabels(groups, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("accuracy (%)", fontsize=8)
    ax.set_ylim(0, 100)
    ax.tick_params(axis="y", labelsize=7)
    ax.legend(
        fontsize=7,
        ncol=min(6, max(1, len(variants))),
        loc="lower center",
        bbox_to_anchor=(0.5, 1.06),
        frameon=False,
    )
    ax.set_title("MNIST-C accuracy per corruption", fontsize=9)
    return _save(fig, out_path)


def plot_auroc_heatmap(
    values: dict[str, dict[str, Value]],
    out_path: str | os.PathLike,
    seen: dict[str, dict[str, bool]] | None = None,
    title: str = "OOD AUROC (%), MSP",
) -> Path:
    """Heatmap of AUROC (%) with variants as rows and OOD sets as columns; cells whose set was
    seen in training are annotated with "seen" and hatched.  Missing cells are blank."""
    variants = list(values)
    sets = list(dict.fromkeys(s for d in values.values() for s in d))
    mat = np.full((len(variants), len(sets)), np.nan)
    for i, v in enumerate(variants):
        for j, s in enumerate(sets):
            if s in values[v] and values[v][s] is not None:
                mat[i, j] = _mean_std(values[v][s])[0] * 100
    fig = Figure(figsize=(1.1 * len(sets) + 2.5, 0.55 * len(variants) + 1.8), layout="constrained")
    ax = fig.subplots()
    finite = mat[np.isfinite(mat)]
    vmin = float(min(50.0, finite.min())) if finite.size else 50.0
    im = ax.imshow(np.ma.masked_invalid(mat), cmap="viridis", vmin=vmin, vmax=100, aspect="auto")
    for i, v in enumerate(variants):
        for j, s in enumerate(sets):
            if not np.isfinite(mat[i, j]):
                continue
            is_seen = bool(seen and seen.get(v, {}).get(s))
            txt = f"{mat[i, j]:.2f}" + ("\nseen" if is_seen else "")
            ax.text(
                j,
                i,
                txt,
                ha="center",
                va="center",
                fontsize=6.5,
                color="k" if mat[i, j] > (vmin + 100) / 2 else "w",
            )
            if is_seen:
                ax.add_patch(_hatch(j, i))
    ax.set_xticks(range(len(sets)))
    ax.set_xticklabels(sets, rotation=40, ha="right", fontsize=7)
    ax.set_yticks(range(len(variants)))
    ax.set_yticklabels(variants, fontsize=7)
    ax.set_title(title + " ('seen' = OE source family: not held out)", fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.04)
    return _save(fig, out_path)


def _hatch(x: int, y: int):
    from matplotlib.patches import Rectangle

    return Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, hatch="///", lw=0, alpha=0.4)
