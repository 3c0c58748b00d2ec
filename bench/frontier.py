"""The model frontier: what each candidate model buys in accuracy, robustness and OOD detection,
and what it costs to train, from evaluated runs of the same study per model.

Usage (after ``fastmix run --variants base,pixmix --seeds 3 --config MODEL --out
runs/frontier/MODEL`` for each candidate, and ``fastmix bench train --json bench/out/train.json``)::

    python -m fastmix.bench.frontier runs/frontier --train-bench bench/out/train.json \\
        --reference runs/frontier/oe_paper --out bench/out/frontier

Writes ``frontier.json``, ``frontier.md`` (the table, mean ± std over seeds) and
``frontier.png`` (clean accuracy, -C mean and held-out AUROC of base and pixmix against the
training cost). The default-model rule it applies: the cheapest model to train that meets
every floor (``FLOORS``). If none does: among the models whose six variants train within the
time budget (``BUDGET_S``, estimated from ``bench train``'s six-run rate and each study's
recipe), the one that meets the floors earliest in their priority order, ties going to the
smaller shortfall on the first floor missed; over all models if none fits the budget.
"""

from __future__ import annotations

import argparse
import json
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

from fastmix.files import atomic_write

HELD_OUT = (
    "notmnist_test",
    "omniglot",
    "gaussian_noise",
    "bernoulli_noise",
    "uniform_noise",
    "mnist_inverted",
)
BUDGET_S = 300.0  # all six variants trained in at most 5 minutes on the benchmark's machine
TRAIN_IMAGES = 55_000  # MNIST's training split
FLOORS = (  # in priority order: (name, variant, metric, floor)
    ("base clean >= 99.4%", "base", "clean", 0.994),
    ("base Fashion-MNIST MSP AUROC >= 99.3", "base", "fmnist", 0.993),
    ("base held-out MSP AUROC >= oe_paper's", "base", "held_out", None),
    ("pixmix MNIST-C >= 94%", "pixmix", "mnist_c", 0.94),
)


def _metrics(r: dict[str, Any]) -> dict[str, float | None]:
    ood = r.get("ood") or {}

    def auroc(n: str) -> float | None:
        e = ood.get(n)
        return None if e is None else e["full"]["msp"]["auroc"]

    held = [auroc(n) for n in HELD_OUT]
    return {
        "clean": r["clean"]["test_accuracy"],
        "mnist_c": (r.get("mnist_c") or {}).get("mean"),
        "fmnist": auroc("fmnist_test"),
        "held_out": float(np.mean(held)) if all(h is not None for h in held) else None,
        **{n: auroc(n) for n in HELD_OUT},
    }


def collect(study: Path) -> dict[str, dict[str, list[dict[str, float | None]]]]:
    """``{variant: [metrics per seed]}`` of one study folder (``<study>/<variant>-s<seed>``)."""
    out: dict[str, list] = {}
    for res in sorted(study.glob("*/results.json")):
        r = json.loads(res.read_text())
        out.setdefault(r["variant"], []).append(_metrics(r))
    return out


def _ms(rows: list[dict], key: str) -> tuple[float, float] | None:
    v = [r[key] for r in rows if r.get(key) is not None]
    if not v:
        return None
    return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0


def _cell(rows: list[dict] | None, key: str) -> str:
    a = _ms(rows or [], key)
    return "–" if a is None else f"{100 * a[0]:.2f} ± {100 * a[1]:.2f}"


def six_variant_seconds(study: Path, six_runs_images_per_s: float | None) -> float | None:
    """Estimated training seconds of the six variants with the study's recipe: epochs x 55,000
    digits x (3 plain runs + 3 OE runs, each OE step also training on ``oe.ratio`` outliers per
    digit) / the six-run training rate."""
    cfgs = sorted(study.glob("*/config.toml"))
    if not cfgs or not six_runs_images_per_s:
        return None
    cfg = tomllib.loads(cfgs[0].read_text())
    images = cfg["train"]["epochs"] * TRAIN_IMAGES * (3 + 3 * (1 + cfg["oe"]["ratio"]))
    return images / six_runs_images_per_s


def _choose(models: dict) -> str:
    """The default-model rule of the module docstring."""
    order = sorted(models, key=lambda k: -(models[k]["cost"].get("six_runs_images_per_s") or 0))
    for k in order:
        if all(c["met"] for c in models[k]["checks"]):
            return k
    fits = [k for k in order if (models[k]["six_variant_s"] or float("inf")) <= BUDGET_S]

    def shortfall(k: str) -> float:
        first = next(c for c in models[k]["checks"] if not c["met"])
        return (first["bar"] or 0.0) - (first["value"] or 0.0)

    return min(
        fits or order, key=lambda k: ([not c["met"] for c in models[k]["checks"]], shortfall(k))
    )


def frontier(root: Path, train_bench: dict | None, reference: Path | None) -> dict:
    """Every model study under ``root`` (one folder each), with costs from ``bench train``."""
    costs = (train_bench or {}).get("train", {}).get("models", {})
    models = {}
    for study in sorted(p for p in root.iterdir() if p.is_dir() and p != reference):
        runs = collect(study)
        if runs:
            cost = costs.get(study.name, {})
            models[study.name] = {
                "runs": runs,
                "cost": cost,
                "six_variant_s": six_variant_seconds(study, cost.get("six_runs_images_per_s")),
            }
    ref = collect(reference) if reference else {}
    ref_held = _ms(ref.get("base", []), "held_out")
    for m in models.values():
        checks = []
        for name, variant, key, floor in FLOORS:
            bar = floor if floor is not None else (ref_held[0] if ref_held else None)
            got = _ms(m["runs"].get(variant, []), key)
            checks.append(
                {
                    "floor": name,
                    "value": got[0] if got else None,
                    "bar": bar,
                    "met": bool(got and bar is not None and got[0] >= bar),
                }
            )
        m["checks"] = checks
    order = sorted(models, key=lambda k: -(models[k]["cost"].get("six_runs_images_per_s") or 0))
    meets = [k for k in order if all(c["met"] for c in models[k]["checks"])]
    choice = _choose(models)
    return {
        "models": models,
        "reference": {"path": str(reference) if reference else None, "base_held_out": ref_held},
        "cheapest_first": order,
        "budget_s": BUDGET_S,
        "meets_all": meets,
        "choice": choice,
    }


def markdown(f: dict) -> str:
    lines = [
        "| model | params | MFLOPs/img | train img/s (six runs) | six variants, s (est.) "
        "| base clean | pixmix clean "
        "| base MNIST-C | pixmix MNIST-C | base FMNIST AUROC | base held-out AUROC | "
        "pixmix held-out AUROC | floors met |",
        "|" + "---|" * 13,
    ]
    for k in f["cheapest_first"]:
        m = f["models"][k]
        c, r = m["cost"], m["runs"]
        met = sum(x["met"] for x in m["checks"])
        secs = "–" if m["six_variant_s"] is None else f"{m['six_variant_s']:.0f}"
        lines.append(
            f"| {k} | {c.get('params', 0):,} | {c.get('flops_per_image', 0) / 1e6:.2f} | "
            f"{c.get('six_runs_images_per_s', 0):,.0f} | "
            f"{secs} | "
            f"{_cell(r.get('base'), 'clean')} | "
            f"{_cell(r.get('pixmix'), 'clean')} | {_cell(r.get('base'), 'mnist_c')} | "
            f"{_cell(r.get('pixmix'), 'mnist_c')} | {_cell(r.get('base'), 'fmnist')} | "
            f"{_cell(r.get('base'), 'held_out')} | {_cell(r.get('pixmix'), 'held_out')} | "
            f"{met}/{len(m['checks'])} |"
        )
    lines += [
        "",
        "Per held-out set, base, MSP AUROC:",
        "",
        "| model | " + " | ".join(HELD_OUT) + " |",
        "|" + "---|" * (len(HELD_OUT) + 1),
    ]
    for k in f["cheapest_first"]:
        lines.append(
            f"| {k} | "
            + " | ".join(_cell(f["models"][k]["runs"].get("base"), n) for n in HELD_OUT)
            + " |"
        )
    ref = f["reference"]["base_held_out"]
    lines += [
        "",
        f"oe_paper preset, base, held-out mean MSP AUROC: "
        f"{'–' if not ref else f'{100 * ref[0]:.2f} ± {100 * ref[1]:.2f}'}",
        f"Meets every floor: {', '.join(f['meets_all']) or 'none'}; choice: {f['choice']}"
        + (
            ""
            if f["meets_all"]
            else f" (floors in priority order among the models whose six variants train in "
            f"{f['budget_s']:.0f} s or less)"
        )
        + ".",
    ]
    return "\n".join(lines) + "\n"


def plot(f: dict, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, NullFormatter

    fig = Figure(figsize=(11, 3.4))
    FigureCanvasAgg(fig)
    panels = (
        ("clean", "clean accuracy (%)"),
        ("mnist_c", "MNIST-C mean (%)"),
        ("held_out", "held-out MSP AUROC (%)"),
    )
    for i, (key, label) in enumerate(panels):
        ax = fig.add_subplot(1, 3, i + 1)
        for variant, marker in (("base", "o"), ("pixmix", "s")):
            for k, m in f["models"].items():
                a = _ms(m["runs"].get(variant, []), key)
                cost = m["cost"].get("six_runs_images_per_s")
                if a and cost:
                    ax.errorbar(
                        cost,
                        100 * a[0],
                        yerr=100 * a[1],
                        fmt=marker,
                        capsize=3,
                        label=f"{k} {variant}",
                    )
                    ax.annotate(
                        k, (cost, 100 * a[0]), fontsize=6, xytext=(3, 3), textcoords="offset points"
                    )
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1000:g}k"))
        ax.set_xticks([2_000, 5_000, 10_000, 20_000])
        ax.set_xlabel("training images/s, six runs (log)", fontsize=8)
        ax.set_ylabel(label, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_title(f"{label}: base (o), pixmix (s)", fontsize=8)
    fig.tight_layout()
    return atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=130))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("root", type=Path, help="one study folder per model")
    p.add_argument("--train-bench", type=Path, help="JSON of fastmix bench train")
    p.add_argument("--reference", type=Path, help="the oe_paper study folder")
    p.add_argument("--out", type=Path, default=Path("bench/out/frontier"))
    a = p.parse_args(argv)
    bench = json.loads(a.train_bench.read_text()) if a.train_bench else None
    f = frontier(a.root, bench, a.reference)
    atomic_write(a.out / "frontier.json", json.dumps(f, indent=1))
    md = markdown(f)
    atomic_write(a.out / "frontier.md", md)
    plot(f, a.out / "frontier.png")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
