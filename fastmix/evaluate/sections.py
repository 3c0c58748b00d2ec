"""One function per section of results.json (schema: :mod:`fastmix.evaluate.results`).

Each takes the logits, labels or anomaly scores it needs (already computed by
:func:`fastmix.evaluate.evaluate.evaluate_run`) and returns that section; none runs a model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from fastmix.evaluate.calibration import calibration_report, calibration_with_ood, fit_temperature
from fastmix.evaluate.metrics import error_detection_auroc, ood_metrics, ood_metrics_draws
from fastmix.evaluate.sets import (
    MNIST_C_CORRUPTIONS,
    EvalSets,
    corrupted_names,
    mnist_c_origin,
    seen_in_training,
)
from fastmix.rng import derive_seed

__all__ = [
    "accuracy",
    "calibration_section",
    "clean_section",
    "data_section",
    "draw_subset",
    "error_detection_section",
    "mnist_c_section",
    "notes_section",
    "ood_section",
    "summary_section",
]

Arrays = dict[str, np.ndarray]


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose argmax is the label."""
    return float(np.mean(np.asarray(logits).argmax(axis=1) == labels))


def draw_subset(n: int, k: int, seed: int) -> np.ndarray:
    """Sorted indices of ``k`` of ``n`` items drawn without replacement
    (``numpy.random.default_rng(derive_seed(seed, "eval_subset", n, k))``); all of them when
    ``n <= k``."""
    if n <= k:
        return np.arange(n)
    rng = np.random.default_rng(derive_seed(seed, "eval_subset", n, k))
    return np.sort(rng.choice(n, size=k, replace=False))


def data_section(sets: EvalSets, names: list[str]) -> dict[str, Any]:
    """``{set: {count, family, role, sha256}}`` for the evaluated sets."""
    return {
        n: {
            "count": int(len(sets[n][0])),
            "family": sets.entry(n).get("family"),
            "role": sets.entry(n).get("role"),
            "sha256": sets.entry(n).get("sha256"),
        }
        for n in names
    }


def clean_section(logits: Arrays, labels: Arrays, test: str, val: str) -> dict[str, Any]:
    """Test and validation accuracy."""
    return {
        "test_accuracy": accuracy(logits[test], labels[test]),
        "val_accuracy": accuracy(logits[val], labels[val]),
        "n_test": int(len(labels[test])),
        "n_val": int(len(labels[val])),
        "test_set": test,
        "val_set": val,
    }


def mnist_c_section(
    logits: Arrays,
    labels: Arrays,
    manifest: dict[str, Any],
    test_accuracy: float,
    prefix: str = "mnist_c",
) -> dict[str, Any]:
    """Accuracy per corruption of the test set's -C set (``prefix``: MNIST-C, or the same 15
    corruptions of another set), the plain mean over the available ones, the drop from clean
    accuracy, and where the corrupted images come from (Mu & Gilmer 2019)."""
    names = corrupted_names(prefix)
    avail = [n for n in names if n in logits]
    per_c = {n[len(prefix) + 1 :]: accuracy(logits[n], labels[n]) for n in avail}
    out: dict[str, Any] = {"available": bool(avail), "set": prefix}
    if not avail:
        out.update(
            missing=list(MNIST_C_CORRUPTIONS),
            complete=False,
            n_corruptions=0,
            origin=None,
            origin_label="not available",
        )
        return out
    prov = mnist_c_origin(manifest, avail)
    mean_c = float(np.mean(list(per_c.values())))
    out.update(
        origin=prov["origin"],
        origin_label=prov["label"],
        generator_version=prov["generator_version"],
        seed=prov["seed"],
        per_corruption=per_c,
        mean=mean_c,
        drop=test_accuracy - mean_c,
        n_corruptions=len(avail),
        complete=len(avail) == len(names),
        missing=[c for c in MNIST_C_CORRUPTIONS if c not in per_c],
    )
    return out


def ood_section(
    cfg: dict[str, Any],
    sets: EvalSets,
    scores: dict[str, Arrays],
    id_set: str,
    ood_names: list[str],
    seed: int,
    subsets: dict[str, dict[str, int]] | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """OOD detection per set and score, and the requested sets that were unavailable.

    ``scores[set][score]``: anomaly scores of the samples of ``set`` (``id_set`` included).
    Per set: the set against the ID set, and the Outlier Exposure protocol (``eval.n_draws``
    draws of ``eval.n_ood`` OOD samples against all ID samples, seeded by
    ``derive_seed(seed, "eval_ood_draws", set)``), with
    whether the set's family was seen in training. ``subsets[set][score]``: the number of
    samples of ``set`` a score was computed on when that is a subset (ODIN); those entries get
    ``subsets {score: {n_id, n_ood}}``."""
    subsets = subsets or {}
    ev = cfg["eval"]
    n_ood, n_draws = int(ev["n_ood"]), int(ev["n_draws"])
    ood: dict[str, Any] = {}
    for name in ood_names:
        if name not in scores:
            continue
        seen, reason = seen_in_training(cfg, name, sets.manifest)
        full, draws = {}, {}
        draws_seed = derive_seed(seed, "eval_ood_draws", name)
        for s, id_s in scores[id_set].items():
            o = scores[name][s]
            full[s] = ood_metrics(id_s, o)
            draws[s] = ood_metrics_draws(id_s, o, n_ood=n_ood, n_draws=n_draws, seed=draws_seed)
        count = len(sets[name][0])
        ood[name] = {
            "family": sets.entry(name).get("family"),
            "count": int(count),
            "seen_in_training": seen,
            "seen_reason": reason,
            "n_ood": int(min(n_ood, count)),
            "n_draws": n_draws,
            "n_id": int(len(sets[id_set][0])),
            "full": full,
            "draws": draws,
        }
        partial = {
            s: {"n_id": int(len(scores[id_set][s])), "n_ood": int(len(scores[name][s]))}
            for s in scores[id_set]
            if s in subsets.get(name, {}) or s in subsets.get(id_set, {})
        }
        if partial:
            ood[name]["subsets"] = partial
    unavailable = {n: sets.unavailable[n] for n in ood_names if n in sets.unavailable}
    return ood, unavailable


def error_detection_section(
    logits: np.ndarray,
    labels: np.ndarray,
    id_set: str,
    score_fns: dict[str, Callable[[np.ndarray], np.ndarray]],
) -> tuple[dict[str, Any], str | None]:
    """AUROC of each score at telling wrong from right predictions on the test set (wrong =
    positive), and a note when that is undefined (no wrong or no right prediction)."""
    auroc: dict[str, Any] = {}
    note = None
    for s, fn in score_fns.items():
        try:
            auroc[s] = error_detection_auroc(logits, labels, fn)
        except ValueError as e:
            auroc[s] = None
            note = f"error detection undefined: {e}"
    section = {
        "set": id_set,
        "positive": "wrong predictions",
        "n_wrong": int(np.sum(logits.argmax(1) != labels)),
        "auroc": auroc,
    }
    return section, note


def calibration_section(
    logits: Arrays, labels: Arrays, test: str, val: str, ood: dict[str, Any], n_ood: int, seed: int
) -> dict[str, Any]:
    """Temperature scaling fitted on ``val`` (Guo et al. 2017); calibration of ``test`` before
    and after; calibration with each OOD set's ``n_ood`` samples (drawn once, seeded) counted
    as wrong predictions (Hendrycks et al. 2019), and its mean over the held-out sets."""
    z_test, y_test, z_val, y_val = logits[test], labels[test], logits[val], labels[val]
    T = fit_temperature(z_val, y_val)
    cal: dict[str, Any] = {
        "temperature": T,
        "fitted_on": val,
        "evaluated_on": test,
        "test": {
            "before": calibration_report(z_test, y_test, 1.0),
            "after": calibration_report(z_test, y_test, T),
        },
        "val": {
            "before": calibration_report(z_val, y_val, 1.0),
            "after": calibration_report(z_val, y_val, T),
        },
        "with_ood": {},
    }
    for name, e in ood.items():
        zo = logits[name][draw_subset(len(logits[name]), int(n_ood), seed)]
        cal["with_ood"][name] = {
            "seen_in_training": e["seen_in_training"],
            "n_ood": int(len(zo)),
            "before": calibration_with_ood(z_test, y_test, zo, 1.0),
            "after": calibration_with_ood(z_test, y_test, zo, T),
        }
    held = [n for n, e in ood.items() if not e["seen_in_training"]]
    if held:
        cal["with_ood_held_out_mean"] = {
            "sets": held,
            **{
                when: {
                    m: float(np.mean([cal["with_ood"][n][when][m] for n in held]))
                    for m in ("ece", "mce", "rms")
                }
                for when in ("before", "after")
            },
        }
    return cal


def summary_section(
    clean: dict[str, Any],
    mnist_c: dict[str, Any],
    ood: dict[str, Any],
    cal: dict[str, Any],
    scores: list[str],
) -> dict[str, Any]:
    """What ``fastmix eval`` prints: accuracy, MNIST-C mean, mean held-out AUROC of MSP (or the
    first score), ECE before / after temperature scaling."""
    main = "msp" if "msp" in scores else scores[0]
    held = [n for n, e in ood.items() if not e["seen_in_training"]]
    return {
        "test_accuracy": clean["test_accuracy"],
        "mnist_c_mean": mnist_c.get("mean"),
        "score": main,
        "ood_auroc_held_out_mean": (
            float(np.mean([ood[n]["full"][main]["auroc"] for n in held])) if held else None
        ),
        "ood_held_out_sets": held,
        "ece_before": cal["test"]["before"]["ece"],
        "ece_after": cal["test"]["after"]["ece"],
        "temperature": cal["temperature"],
    }


def notes_section(
    cfg: dict[str, Any],
    mnist_c: dict[str, Any],
    ood: dict[str, Any],
    manifest: dict[str, Any],
    unavailable: dict[str, str],
) -> list[str]:
    """Leaks and overlaps a reader must know (S&P vs impulse_noise, PixMix mixing set and OE
    source families), MNIST-C provenance and completeness, sets not evaluated."""
    notes = []
    aug = cfg.get("augment", {})
    c_set = cfg.get("data", {}).get("corrupted", "mnist_c")
    c_title = {"mnist_c": "MNIST-C"}.get(c_set, f"{c_set.replace('_c', '').upper()}-C")
    if aug.get("kind") == "sp":
        notes.append(
            f"S&P training (amount {aug.get('sp_amount')}) overlaps {c_title} impulse_noise "
            "(salt-and-pepper, amount 0.17): impulse_noise is not a held-out corruption for "
            "this model."
        )
    if aug.get("kind") == "pixmix":
        mix = cfg.get("data", {}).get("mixing", "fractals")
        fam = manifest.get("betons", {}).get(mix, {}).get("family", mix)
        same = [n for n, e in ood.items() if e["family"] == fam]
        if same:
            notes.append(
                f"PixMix mixing pictures ({mix}, family {fam}) share a family with "
                f"OOD set(s) {', '.join(same)}."
            )
    if cfg.get("oe", {}).get("enabled"):
        seen = [n for n, e in ood.items() if e["seen_in_training"]]
        src = cfg["oe"].get("source")
        notes.append(
            f"Outlier Exposure source: {src}. "
            + (
                f"Seen in training (not held-out OOD): {', '.join(seen)}."
                if seen
                else "No evaluated OOD set shares its family."
            )
        )
    if mnist_c.get("available") and mnist_c.get("origin") != "official":
        notes.append(
            f"{c_title} is {mnist_c['origin_label']}: same corruptions and severities "
            "as the official files, not the same pixels; compare across fastmix runs."
        )
    if not mnist_c.get("available"):
        notes.append(f"{c_title} not available: build it with `fastmix convert` ({c_set}/*).")
    elif mnist_c.get("missing"):
        notes.append(
            f"{c_title} incomplete: {len(mnist_c['missing'])} of 15 corruptions missing "
            f"({', '.join(mnist_c['missing'])}); the mean is over the available ones."
        )
    if unavailable:
        notes.append(
            "Unavailable sets (not evaluated): "
            + "; ".join(f"{n} ({why})" for n, why in unavailable.items())
        )
    return notes
