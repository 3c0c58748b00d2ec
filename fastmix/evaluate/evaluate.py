"""Evaluate a trained run: one forward pass per set, then every section of results.json.

:func:`evaluate_run` holds the run directory's lock (a training or another evaluation of the
same run is refused meanwhile), removes temporaries a killed evaluation left, computes the
logits of the test, validation, MNIST-C and OOD sets (:mod:`fastmix.evaluate.inference`), builds
each section (:mod:`fastmix.evaluate.sections`) and writes ``logits.npz`` and, last,
``results.json`` (files and schema: :mod:`fastmix.evaluate.results`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fastmix.errors import ConfigError, DataError
from fastmix.evaluate import sections
from fastmix.evaluate.inference import predict, resolve_inference
from fastmix.evaluate.results import CONVENTION, RESULTS_FORMAT, SCORE_TEXT, jsonable
from fastmix.evaluate.scores import SCORES
from fastmix.evaluate.sets import MNIST_C_CORRUPTIONS, MNIST_C_PREFIX, EvalSets, load_eval_sets
from fastmix.files import atomic_write, remove_temporaries
from fastmix.train.run_dir import EVAL_FILES, LOGITS_FILE, RESULTS_FILE
from fastmix.train.run_dir import lock as run_lock

__all__ = ["evaluate_run"]


@dataclass
class _Inferred:
    """What the forward passes produced: logits and labels per set, in evaluation order."""

    order: list[str]
    logits: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    seconds: float


def _score_fns(names: list[str]) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    bad = [s for s in names if s not in SCORES]
    if bad:
        raise ConfigError(f"eval.scores: unknown score(s) {bad}; valid: {', '.join(SCORES)}")
    return {s: SCORES[s] for s in names}


def _load_sets(cfg: dict[str, Any], data_dir: Path,
               sets_cache: dict[str, EvalSets] | None) -> tuple[EvalSets, list[str]]:
    """The sets of the run's config (through the shared cache) and the OOD set names."""
    test, val = cfg["data"]["test"], cfg["data"]["val"]
    mc_names = [MNIST_C_PREFIX + c for c in MNIST_C_CORRUPTIONS]
    ood_names = [n for n in cfg["eval"]["ood_sets"] if n not in (test, val)]
    key = str(data_dir.resolve()) if data_dir.is_dir() else str(data_dir)
    cache = sets_cache if sets_cache is not None else {}
    sets = load_eval_sets(data_dir, [*mc_names, *ood_names], required=(test, val),
                          into=cache.get(key))
    cache[key] = sets
    return sets, ood_names


def _infer(model: Any, sets: EvalSets, cfg: dict[str, Any], ood_names: list[str], bs: int,
           device: str, precision: str, desc: str, progress: bool) -> _Inferred:
    """Logits of test, validation, the available MNIST-C and OOD sets; class labels checked."""
    test, val = cfg["data"]["test"], cfg["data"]["val"]
    mc_names = [MNIST_C_PREFIX + c for c in MNIST_C_CORRUPTIONS]
    order = [test, val] + [n for n in (*mc_names, *ood_names) if n in sets]
    t0 = time.perf_counter()
    logits = {n: predict(model, sets[n][0], bs, device, precision, desc=f"{desc}: {n}",
                         progress=progress).logits for n in order}
    seconds = time.perf_counter() - t0
    labels = {n: sets[n][1] for n in order}
    for n in [test, val, *mc_names]:
        if n in labels and (labels[n].min() < 0 or labels[n].max() >= logits[n].shape[1]):
            raise DataError(f"{sets.data_dir}: set {n} must carry class labels, found "
                            f"[{labels[n].min()}, {labels[n].max()}]")
    return _Inferred(order, logits, labels, seconds)


def _results(run_dir: Path, cfg: dict[str, Any], sets: EvalSets, inf: _Inferred,
             ood_names: list[str], score_fns: dict[str, Callable[[np.ndarray], np.ndarray]],
             *, which: str, seed: int, device: str, precision: str, bs: int) -> dict[str, Any]:
    """Every section of results.json from the logits."""
    test, val = cfg["data"]["test"], cfg["data"]["val"]
    z, y = inf.logits, inf.labels
    clean = sections.clean_section(z, y, test, val)
    mnist_c = sections.mnist_c_section(z, y, sets.manifest, clean["test_accuracy"])
    scores = {n: {s: fn(z[n]) for s, fn in score_fns.items()}
              for n in [test, *ood_names] if n in z}
    ood, ood_unavailable = sections.ood_section(cfg, sets, scores, test, ood_names, seed)
    err, err_note = sections.error_detection_section(z[test], y[test], test, score_fns)
    cal = sections.calibration_section(z, y, test, val, ood, int(cfg["eval"]["n_ood"]), seed)
    notes = sections.notes_section(cfg, mnist_c, ood, sets.manifest, ood_unavailable)
    if err_note:
        notes.append(err_note)
    return {
        "format": RESULTS_FORMAT,
        "run": run_dir.name,
        "variant": cfg.get("variant", {}).get("name", "custom"),
        "seed": int(cfg["train"]["seed"]),
        "which": which,
        "eval_seed": int(seed),
        "config": {"augment": cfg["augment"], "oe": cfg["oe"], "model": cfg["model"]},
        "convention": {**CONVENTION, "scores": {s: SCORE_TEXT.get(s, s) for s in score_fns}},
        "inference": {"device": device, "precision": precision, "batch_size": bs,
                      "channels_last": device == "cpu" or precision == "bf16",
                      "images": int(sum(len(sets[n][0]) for n in inf.order)),
                      "seconds": round(inf.seconds, 3)},
        "data": sections.data_section(sets, inf.order),
        "clean": clean,
        "mnist_c": mnist_c,
        "ood": ood,
        "ood_unavailable": ood_unavailable,
        "error_detection": err,
        "calibration": cal,
        "summary": sections.summary_section(clean, mnist_c, ood, cal, list(score_fns)),
        "notes": notes,
    }


def _write(run_dir: Path, results: dict[str, Any], inf: _Inferred) -> None:
    """logits.npz, then results.json last; the old results.json goes first, so a run directory
    never holds a results.json beside logits it was not computed from."""
    arrays = {f"logits/{n}": inf.logits[n] for n in inf.order}
    arrays.update({f"labels/{n}": inf.labels[n].astype(np.int64) for n in inf.order})
    (run_dir / RESULTS_FILE).unlink(missing_ok=True)
    atomic_write(run_dir / LOGITS_FILE, lambda f: np.savez_compressed(f, **arrays))
    atomic_write(run_dir / RESULTS_FILE, json.dumps(results, indent=1, allow_nan=False) + "\n")


def evaluate_run(
    run_dir: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    sets_cache: dict[str, EvalSets] | None = None,
    seed: int = 0,
    *,
    which: str = "best",
    device: str = "auto",
    precision: str = "auto",
    batch_size: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate ``<run_dir>/checkpoints/<which>.pt``; write results.json and logits.npz.

    ``data_dir`` defaults to the run config's ``data.dir``.  ``sets_cache``: a dict (initially
    empty) shared by several calls; it maps each resolved data folder to its
    :class:`~fastmix.evaluate.sets.EvalSets`, so each beton is read once.  ``seed`` drives the
    OE-protocol draws and the OOD subsample of the calibration-with-OOD check.  ``progress``: a
    tqdm bar per set during inference.  Returns the results dict (schema in
    :mod:`fastmix.evaluate.results`).  Raises DataError (missing run or data, the run locked by
    a training or another evaluation), ConfigError, or CheckpointError (missing or foreign
    checkpoint).
    """
    from fastmix.train.checkpoint import load_run

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: run directory not found")
    if which not in ("best", "last"):
        raise ConfigError(f"which must be best or last, got {which!r}")
    device, precision = resolve_inference(device, precision)  # refuse a missing GPU first
    with run_lock(run_dir):
        remove_temporaries(run_dir, EVAL_FILES)  # of a killed evaluation: none is in progress
        t_start = time.perf_counter()
        model, cfg = load_run(run_dir, which)
        score_fns = _score_fns(list(cfg["eval"]["scores"]))
        data_dir = Path(data_dir if data_dir is not None else cfg["data"]["dir"])
        sets, ood_names = _load_sets(cfg, data_dir, sets_cache)
        bs = int(batch_size or cfg["eval"]["batch_size"])
        inf = _infer(model, sets, cfg, ood_names, bs, device, precision,
                     f"eval {run_dir.name}", progress)
        results = jsonable(_results(run_dir, cfg, sets, inf, ood_names, score_fns, which=which,
                                    seed=seed, device=device, precision=precision, bs=bs))
        results["seconds"] = round(time.perf_counter() - t_start, 3)
        _write(run_dir, results, inf)
    return results
