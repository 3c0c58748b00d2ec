"""PNG of the loader benchmark: images/second per pipeline, baseline beside fastmix."""

from __future__ import annotations

from pathlib import Path

from fastmix.files import atomic_write


def plot_loader(loader: dict, path: str | Path, title: str = "") -> Path:
    """Bar chart (log scale) of ``run_loader_bench``'s images/second: for each pipeline the
    per-sample PyTorch baseline and fastmix at each thread count, with the fastmix / baseline
    ratio written above fastmix's fastest bar. Written atomically
    (``fastmix.files.atomic_write``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    variants = list(loader["baseline"])
    threads = list(next(iter(loader["ffcv"].values())))
    series = [("baseline (torch DataLoader, 2 workers)", [loader["baseline"][v] for v in variants])]
    for t in threads:
        label = f"fastmix, {t} thread{'s' if t != '1' else ''}"
        series.append((label, [loader["ffcv"][v][t] for v in variants]))
    width = 0.8 / len(series)
    x = np.arange(len(variants))
    fig, ax = plt.subplots(figsize=(7, 4))
    colors = ["#999999", "#6baed6", "#08519c", "#08306b"]
    for i, (label, rows) in enumerate(series):
        rates = [r["img_per_s"] for r in rows]
        ax.bar(x + (i - (len(series) - 1) / 2) * width, rates, width, label=label,
               color=colors[i % len(colors)])  # fmt: skip
    for j, v in enumerate(variants):
        top = max(loader["ffcv"][v][t]["img_per_s"] for t in threads)
        ax.annotate(f"{loader['speedup_vs_baseline'][v]:.1f}x", (x[j], top), ha="center",
                    va="bottom", xytext=(0, 4), textcoords="offset points", fontsize=9)  # fmt: skip
    names = {"none": "no augmentation", "sp": "salt-and-pepper", "pixmix": "PixMix"}
    ax.set_xticks(x, [names.get(v, v) for v in variants])
    ax.set_yscale("log")
    top = max(r["img_per_s"] for v in variants for r in loader["ffcv"][v].values())
    ax.set_ylim(top=top * 4)  # room for the ratios and the legend above the bars
    ax.set_ylabel("images / second (median of rounds)")
    ax.set_title(title or "Training loader throughput (ratio: fastmix / baseline)", fontsize=10)
    ax.legend(fontsize=8, loc="upper right", ncols=3)
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    try:
        return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    finally:
        plt.close(fig)
