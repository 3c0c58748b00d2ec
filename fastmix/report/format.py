"""Formatting shared by the report's sections: ``mean ± std`` cells, markdown tables, the
variants' order and titles, and the runs grouped by variant."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

VARIANT_ORDER = ("base", "base_oe", "sp", "sp_oe", "pixmix", "pixmix_oe")
VARIANT_TITLE = {
    "base": "Base",
    "base_oe": "Base+OE",
    "sp": "S&P",
    "sp_oe": "S&P+OE",
    "pixmix": "PixMix",
    "pixmix_oe": "PixMix+OE",
}
PM = "±"
Groups = dict[str, list[dict[str, Any]]]


def vals(xs: Iterable[Any]) -> list[float]:
    return [float(x) for x in xs if x is not None]


def agg(xs: Iterable[Any]) -> tuple[float, float, int] | None:
    v = vals(xs)
    if not v:
        return None
    return float(np.mean(v)), (float(np.std(v, ddof=1)) if len(v) > 1 else 0.0), len(v)


def fmt(xs: Iterable[Any], scale: float = 100.0, digits: int = 2, empty: str = "–") -> str:
    """``mean ± std`` (several values) or the value (one), times ``scale``."""
    a = agg(xs)
    if a is None:
        return empty
    m, s, n = a
    if n == 1:
        return f"{m * scale:.{digits}f}"
    return f"{m * scale:.{digits}f} {PM} {s * scale:.{digits}f}"


def get(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def group_by_variant(results: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault(r.get("variant", "custom"), []).append(r)
    order = [v for v in VARIANT_ORDER if v in groups] + sorted(set(groups) - set(VARIANT_ORDER))
    return {v: sorted(groups[v], key=lambda r: (r.get("seed", 0), r.get("run", ""))) for v in order}


def title(v: str) -> str:
    return VARIANT_TITLE.get(v, v)


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out + [""]


def seen_any(runs: list[dict[str, Any]], ood_set: str) -> bool | None:
    flags = {
        bool(get(r, "ood", ood_set, "seen_in_training"))
        for r in runs
        if get(r, "ood", ood_set) is not None
    }
    if not flags:
        return None
    return True in flags


def status(seen: bool | None) -> str:
    return "n/a" if seen is None else ("**seen in training**" if seen else "held out")


def model_tag(r: dict[str, Any]) -> str:
    """The model and recipe of a run, e.g. ``lenet w16`` or ``lenet_oe (oe_paper)``: its model
    name, width (for the models that have one) and the presets beyond the variant's."""
    cfg = r.get("config") or {}
    m = cfg.get("model") or {}
    name = m.get("name", "?")
    tag = name if name == "lenet_oe" else f"{name} w{m.get('width', '?')}"
    presets = [p for p in cfg.get("presets") or [] if p != "smoke"]
    return f"{tag} ({', '.join(presets)})" if presets else tag


def split_by_model(results: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Runs by ``model_tag``, the tag with most runs first."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        out.setdefault(model_tag(r), []).append(r)
    return dict(sorted(out.items(), key=lambda kv: -len(kv[1])))


def study_titles(groups: Groups) -> tuple[str, str]:
    """(in-distribution title, -C title) of the report's main runs, e.g. ("MNIST", "MNIST-C")
    or ("Fashion-MNIST", "Fashion-MNIST-C")."""
    from fastmix.evaluate.sets import id_title

    r = next((r for runs in groups.values() for r in runs), {})
    name = id_title(get(r, "clean", "test_set") or "mnist_test")
    return name, f"{name}-C"
