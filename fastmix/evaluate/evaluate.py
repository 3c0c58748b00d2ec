"""Evaluate a trained run: one forward pass per set, then every section of results.json.

:func:`evaluate_run` holds the run directory's lock (a training or another evaluation of the
same run is refused meanwhile), removes temporaries a killed evaluation left, computes the
logits of the test, validation, MNIST-C and OOD sets and the penultimate features of the
training subset, validation, test and OOD sets (:mod:`fastmix.evaluate.inference`), runs the
post-hoc detectors (:mod:`fastmix.evaluate.posthoc`), builds each section
(:mod:`fastmix.evaluate.sections`) and writes ``logits.npz``, ``features.npz`` and, last,
``results.json`` (files and schema: :mod:`fastmix.evaluate.results`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fastmix.errors import ConfigError, DataError
from fastmix.evaluate import sections
from fastmix.evaluate.detectors import (
    DETECTOR_TEXT,
    DETECTORS,
    FEATURE_DETECTORS,
    TrainingFeatures,
    training_features,
)
from fastmix.evaluate.inference import predict, resolve_inference
from fastmix.evaluate.posthoc import FEATURE_DTYPE, TRAIN_SUBSET, DetectorScores, run_detectors
from fastmix.evaluate.results import CONVENTION, RESULTS_FORMAT, SCORE_TEXT, jsonable
from fastmix.evaluate.scores import SCORES
from fastmix.evaluate.sets import EvalSets, corrupted_names, load_eval_sets
from fastmix.files import atomic_write, remove_temporaries
from fastmix.train.run_dir import EVAL_FILES, FEATURES_FILE, LOGITS_FILE, RESULTS_FILE
from fastmix.train.run_dir import lock as run_lock

__all__ = ["evaluate_loaded", "evaluate_run", "write_results"]

DETECTOR_CONVENTION = (
    "post-hoc detectors: float64 from the stored float16 penultimate features (fit on the "
    "training subset's features and the classifier head, never on OOD data); odin on seeded "
    "subsets of the ID test set and of each OOD set (ood[set].subsets), perturbation chosen on "
    "ID validation images"
)


@dataclass(frozen=True)
class _Plan:
    """What the run's config asks for."""

    test: str
    val: str
    train: str
    corrupted: list[str]  # the test set's -C sets (data.corrupted/<corruption>)
    ood: list[str]
    scores: list[str]  # eval.scores, in order
    logit_scores: dict[str, Callable[[np.ndarray], np.ndarray]]
    detectors: list[str]
    save_features: bool

    @property
    def needs_features(self) -> bool:
        return self.save_features or any(d in FEATURE_DETECTORS for d in self.detectors)


@dataclass
class _Inferred:
    """What the forward passes produced: logits and labels per set (evaluation order), features
    (``FEATURE_DTYPE``) of the training subset ("train") and of the other feature sets."""

    order: list[str]
    logits: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    seconds: float
    features: dict[str, np.ndarray] = field(default_factory=dict)
    feature_labels: dict[str, np.ndarray] = field(default_factory=dict)
    train_index: np.ndarray | None = None
    train_seconds: float = 0.0


def _plan(cfg: dict[str, Any]) -> _Plan:
    ev = cfg["eval"]
    names = list(ev["scores"])
    bad = [s for s in names if s not in SCORES and s not in DETECTORS]
    if bad:
        raise ConfigError(
            f"eval.scores: unknown score(s) {bad}; valid: {', '.join([*SCORES, *DETECTORS])}"
        )
    test, val = cfg["data"]["test"], cfg["data"]["val"]
    return _Plan(
        test=test,
        val=val,
        train=cfg["data"]["train"],
        corrupted=corrupted_names(cfg["data"].get("corrupted", "mnist_c")),
        ood=[n for n in ev["ood_sets"] if n not in (test, val)],
        scores=names,
        logit_scores={s: SCORES[s] for s in names if s in SCORES},
        detectors=[s for s in names if s in DETECTORS],
        save_features=bool(ev.get("features", True)),
    )


def _load_sets(plan: _Plan, data_dir: Path, sets_cache: dict[str, EvalSets] | None) -> EvalSets:
    """The sets of the plan, through the shared cache (the training set, optional, only when
    features are needed)."""
    mc_names = plan.corrupted
    train = [plan.train] if plan.needs_features else []
    key = str(data_dir.resolve()) if data_dir.is_dir() else str(data_dir)
    cache = sets_cache if sets_cache is not None else {}
    sets = load_eval_sets(
        data_dir,
        [*mc_names, *plan.ood, *train],
        required=(plan.test, plan.val),
        into=cache.get(key),
    )
    cache[key] = sets
    return sets


def _advance(bar, name: str, sets: EvalSets) -> None:
    """The run's bar: the images of set ``name`` done, its name shown."""
    bar.set_postfix_str(name)
    bar.update(len(sets[name][0]))


def _infer(
    model: Any,
    sets: EvalSets,
    plan: _Plan,
    bs: int,
    device: str,
    precision: str,
    desc: str,
    progress: bool,
) -> _Inferred:
    """Logits of test, validation, the available -C and OOD sets (with the features of test,
    validation and OOD when needed); class labels checked. On a CPU the sets go to one worker
    thread per core, one torch thread each, so every set's logits are the same whatever else
    is evaluated beside it (``fastmix.runtime.Workers``)."""
    from tqdm import tqdm

    from fastmix.evaluate.inference import prepare_model
    from fastmix.runtime import Workers, usable_cores

    mc_names = plan.corrupted
    order = [plan.test, plan.val] + [n for n in (*mc_names, *plan.ood) if n in sets]
    with_features = {plan.test, plan.val, *plan.ood} if plan.needs_features else set()
    t0 = time.perf_counter()
    model, _ = prepare_model(model, device, precision)
    workers = Workers(len(usable_cores()) if device == "cpu" else 1, 1)
    bar = tqdm(
        total=sum(len(sets[n][0]) for n in order),
        desc=desc,
        unit="img",
        disable=not progress,
        leave=False,
    )

    def one(n: str):
        p = predict(
            model, sets[n][0], bs, device, precision, features=n in with_features, prepared=True
        )
        return n, p

    try:
        done = workers.map(one, [(n,) for n in order], on_done=lambda r: _advance(bar, r[0], sets))
    finally:
        workers.close()
        bar.close()
    logits, feats = {}, {}
    for n, p in done:
        logits[n] = p.logits
        if p.features is not None:
            feats[n] = p.features.astype(FEATURE_DTYPE)
    seconds = time.perf_counter() - t0
    labels = {n: sets[n][1] for n in order}
    for n in [plan.test, plan.val, *mc_names]:
        if n in labels and (labels[n].min() < 0 or labels[n].max() >= logits[n].shape[1]):
            raise DataError(
                f"{sets.data_dir}: set {n} must carry class labels, found "
                f"[{labels[n].min()}, {labels[n].max()}]"
            )
    return _Inferred(
        order, logits, labels, seconds, feats, {n: labels[n] for n in order if n in feats}
    )


def _train_features(
    model: Any,
    sets: EvalSets,
    plan: _Plan,
    inf: _Inferred,
    seed: int,
    bs: int,
    device: str,
    precision: str,
    desc: str,
    progress: bool,
) -> TrainingFeatures:
    """Features of :data:`TRAIN_SUBSET` seeded training images (stored as ``train``), with
    their labels and the classifier head."""
    import torch

    images, labels = sets[plan.train]
    t0 = time.perf_counter()
    idx = sections.draw_subset(len(images), TRAIN_SUBSET, seed)
    f = predict(
        model,
        images[idx],
        bs,
        device,
        precision,
        features=True,
        desc=f"{desc}: {plan.train} (subset)",
        progress=progress,
    ).features
    inf.features["train"] = f.astype(FEATURE_DTYPE)
    inf.feature_labels["train"] = labels[idx]
    inf.train_index = idx
    inf.train_seconds = time.perf_counter() - t0
    head = model.get_classifier()
    bias = head.bias if head.bias is not None else torch.zeros(head.out_features)
    return training_features(
        inf.features["train"],
        labels[idx],
        head.weight.detach().cpu().numpy(),
        bias.detach().cpu().numpy(),
    )


def _features_section(plan: _Plan, inf: _Inferred, seed: int) -> dict[str, Any]:
    return {
        "file": FEATURES_FILE if plan.save_features else None,
        "dtype": np.dtype(FEATURE_DTYPE).name,
        "dim": int(inf.features[plan.test].shape[1]),
        "sets": list(inf.features),
        "train_set": plan.train,
        "n_train": int(len(inf.features.get("train", ()))),
        "subset_seed": int(seed),
        "seconds_train_subset": round(inf.train_seconds, 3),
    }


def _detectors_section(det: DetectorScores) -> dict[str, Any]:
    return {
        **det.info,
        **{
            name: {"paper": DETECTORS[name].PAPER, "unavailable": why}
            for name, why in det.unavailable.items()
        },
    }


def _results(
    run_dir: Path,
    cfg: dict[str, Any],
    sets: EvalSets,
    plan: _Plan,
    inf: _Inferred,
    det: DetectorScores,
    *,
    which: str,
    seed: int,
    device: str,
    precision: str,
    bs: int,
) -> dict[str, Any]:
    """Every section of results.json from the logits and the detector scores."""
    test, val = plan.test, plan.val
    z, y = inf.logits, inf.labels
    clean = sections.clean_section(z, y, test, val)
    mnist_c = sections.mnist_c_section(
        z, y, sets.manifest, clean["test_accuracy"], cfg["data"].get("corrupted", "mnist_c")
    )
    scores = {
        n: {s: fn(z[n]) for s, fn in plan.logit_scores.items()} for n in [test, *plan.ood] if n in z
    }
    for n, by_det in det.scores.items():
        scores[n].update(by_det)
    names = [s for s in plan.scores if s in scores[test]]  # eval.scores' order, available ones
    scores = {n: {s: by_score[s] for s in names} for n, by_score in scores.items()}
    ood, ood_unavailable = sections.ood_section(
        cfg, sets, scores, test, plan.ood, seed, det.subsets
    )
    err, err_note = sections.error_detection_section(z[test], y[test], test, plan.logit_scores)
    cal = sections.calibration_section(z, y, test, val, ood, int(cfg["eval"]["n_ood"]), seed)
    notes = sections.notes_section(cfg, mnist_c, ood, sets.manifest, ood_unavailable)
    if err_note:
        notes.append(err_note)
    if det.unavailable:
        notes.append(
            f"Detectors not evaluated: {', '.join(det.unavailable)} "
            f"({next(iter(det.unavailable.values()))})."
        )
    text = {**SCORE_TEXT, **DETECTOR_TEXT}
    convention = {**CONVENTION, "scores": {s: text.get(s, s) for s in names}}
    if plan.detectors:
        convention["detectors"] = DETECTOR_CONVENTION
    results = {
        "format": RESULTS_FORMAT,
        "run": run_dir.name,
        "variant": cfg.get("variant", {}).get("name", "custom"),
        "seed": int(cfg["train"]["seed"]),
        "which": which,
        "eval_seed": int(seed),
        "config": {
            "augment": cfg["augment"],
            "oe": cfg["oe"],
            "model": cfg["model"],
            "train": cfg["train"],
            "presets": cfg["variant"].get("presets", []),
        },
        "convention": convention,
        "inference": {
            "device": device,
            "precision": precision,
            "batch_size": bs,
            "channels_last": device == "cpu" or precision == "bf16",
            "images": int(sum(len(sets[n][0]) for n in inf.order)),
            "seconds": round(inf.seconds, 3),
        },
        "data": sections.data_section(sets, inf.order),
        "clean": clean,
        "mnist_c": mnist_c,
        "ood": ood,
        "ood_unavailable": ood_unavailable,
    }
    if plan.detectors:
        results["detectors"] = _detectors_section(det)
    if inf.features:
        results["features"] = _features_section(plan, inf, seed)
    results.update(
        {
            "error_detection": err,
            "calibration": cal,
            "summary": sections.summary_section(clean, mnist_c, ood, cal, names),
            "notes": notes,
        }
    )
    return results


def _write(run_dir: Path, results: dict[str, Any], inf: _Inferred, save_features: bool) -> None:
    """logits.npz, features.npz, then results.json last; the old results.json and features.npz
    go first, so a run directory never holds a results.json or features beside logits they
    were not computed with."""
    arrays = {f"logits/{n}": inf.logits[n] for n in inf.order}
    arrays.update({f"labels/{n}": inf.labels[n].astype(np.int64) for n in inf.order})
    (run_dir / RESULTS_FILE).unlink(missing_ok=True)
    (run_dir / FEATURES_FILE).unlink(missing_ok=True)
    # uncompressed: deflate saves only ~15% of these float arrays and is most of the write time
    atomic_write(run_dir / LOGITS_FILE, lambda f: np.savez(f, **arrays))
    if save_features and inf.features:
        feats = {f"features/{n}": v for n, v in inf.features.items()}
        feats.update({f"labels/{n}": v.astype(np.int64) for n, v in inf.feature_labels.items()})
        if inf.train_index is not None:
            feats["indices/train"] = inf.train_index.astype(np.int64)
        atomic_write(run_dir / FEATURES_FILE, lambda f: np.savez(f, **feats))
    atomic_write(run_dir / RESULTS_FILE, json.dumps(results, indent=1, allow_nan=False) + "\n")


write_results = _write  # the public name (fastmix.evaluate.external writes through it too)


def _evaluate_locked(
    run_dir: Path,
    data_dir: str | os.PathLike | None,
    sets_cache: dict[str, EvalSets] | None,
    seed: int,
    which: str,
    device: str,
    precision: str,
    batch_size: int | None,
    progress: bool,
) -> dict[str, Any]:
    from fastmix.runtime import set_torch_threads
    from fastmix.train.checkpoint import load_run

    t_start = time.perf_counter()
    # Every usable core, on CUDA too (importing ffcv set this thread to 1): the detectors' KNN,
    # the metrics and the feature bank run on the CPU whatever the model's device.
    set_torch_threads()
    model, cfg = load_run(run_dir, which)
    results, inf, plan = evaluate_loaded(
        model, cfg, run_dir.name, data_dir, sets_cache, seed, which, device, precision,
        batch_size, progress,
    )  # fmt: skip
    results["seconds"] = round(time.perf_counter() - t_start, 3)
    _write(run_dir, results, inf, plan.save_features)
    return results


def evaluate_loaded(
    model: Any,
    cfg: dict[str, Any],
    name: str,
    data_dir: str | os.PathLike | None,
    sets_cache: dict[str, EvalSets] | None,
    seed: int,
    which: str,
    device: str,
    precision: str,
    batch_size: int | None,
    progress: bool,
) -> tuple[dict[str, Any], _Inferred, _Plan]:
    """Every section of results.json for ``model`` (eval mode; ``forward_features``,
    ``forward_head`` and ``get_classifier`` for the feature detectors) under the run config
    ``cfg``, the run named ``name``; nothing written. Also returns what ``_write`` needs."""
    from fastmix.runtime import set_torch_threads

    plan = _plan(cfg)
    data = Path(data_dir if data_dir is not None else cfg["data"]["dir"])
    sets = _load_sets(plan, data, sets_cache)
    bs = int(batch_size or cfg["eval"]["batch_size"])
    desc = f"eval {name}"
    inf = _infer(model, sets, plan, bs, device, precision, desc, progress)
    train = None
    if plan.needs_features and plan.train in sets:
        train = _train_features(model, sets, plan, inf, seed, bs, device, precision, desc, progress)
    set_torch_threads()  # the loaders above set it to their worker count
    det = run_detectors(
        plan.detectors,
        model,
        train,
        inf.features,
        sets,
        [n for n in (plan.test, *plan.ood) if n in inf.logits],
        plan.val,
        seed,
        train_set=plan.train,
        device=device,
        batch_size=bs,
        desc=desc,
        progress=progress,
        train_missing=f"training set {plan.train} unavailable: {sets.unavailable.get(plan.train)}",
    )
    results = jsonable(
        _results(
            Path(name),
            cfg,
            sets,
            plan,
            inf,
            det,
            which=which,
            seed=seed,
            device=device,
            precision=precision,
            bs=bs,
        )
    )
    return results, inf, plan


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
    """Evaluate ``<run_dir>/checkpoints/<which>.pt``; write results.json, logits.npz and
    (``eval.features``, default on) features.npz.

    ``data_dir`` defaults to the run config's ``data.dir``.  ``sets_cache``: a dict (initially
    empty) shared by several calls; it maps each resolved data folder to its
    :class:`~fastmix.evaluate.sets.EvalSets`, so each beton is read once.  ``seed`` drives the
    OE-protocol draws, the OOD subsample of the calibration-with-OOD check and the subsets the
    detectors use (training features, ODIN).  ``progress``: a tqdm bar per set during
    inference.  Returns the results dict (schema in :mod:`fastmix.evaluate.results`).  Raises
    DataError (missing run or data, the run locked by a training or another evaluation),
    ConfigError, or CheckpointError (missing or foreign checkpoint).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: run directory not found")
    if which not in ("best", "last"):
        raise ConfigError(f"which must be best or last, got {which!r}")
    device, precision = resolve_inference(device, precision)  # refuse a missing GPU first
    with run_lock(run_dir, "fastmix eval"):
        remove_temporaries(run_dir, EVAL_FILES)  # of a killed evaluation: none is in progress
        return _evaluate_locked(
            run_dir, data_dir, sets_cache, seed, which, device, precision, batch_size, progress
        )
