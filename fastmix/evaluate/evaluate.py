"""Evaluate a trained run: accuracy, MNIST-C, OOD detection, error detection, calibration.

One forward pass per set and model; every metric is computed from the saved logits, which are
written beside the results so any number can be recomputed::

    <run>/results.json   every metric (schema below), written atomically
    <run>/logits.npz     "logits/<set>" float32 (N, 10) and "labels/<set>" int64 (N,) for every
                         evaluated set (see :func:`load_logits`), written atomically

results.json (metrics are fractions; ``None`` where undefined)::

    format, run, variant, seed (training), which (best|last), eval_seed, seconds
    config         {augment, oe, model} sections of the run's config
    convention     OOD positive, FPR95 rule, score formulas, seen-in-training rule, ...
    inference      {device, precision, channels_last, batch_size, images, seconds}
    data           {set: {count, family, role, sha256}} for every evaluated set
    clean          {test_accuracy, val_accuracy, n_test, n_val, test_set, val_set}
    mnist_c        {available, origin (official|regenerated|mixed), origin_label,
                    generator_version, seed, per_corruption {name: acc}, mean (plain mean),
                    drop (clean - mean), n_corruptions, complete, missing [names]}
    ood            {set: {family, count, seen_in_training, seen_reason, n_ood, n_draws, n_id,
                    full {score: {auroc, aupr_in, aupr_out, fpr95}},
                    draws {score: {mean {..}, std {..}}}}}
    ood_unavailable {set: reason}
    error_detection {set, positive, n_wrong, auroc {score: value}}
    calibration    {temperature, fitted_on, evaluated_on, test {before, after}, val {..},
                    with_ood {set: {seen_in_training, n_ood, before, after}},
                    with_ood_held_out_mean {sets, before {ece, mce, rms}, after {..}}}
                   (before/after = fastmix.evaluate.calibration.calibration_report keys)
    summary        {test_accuracy, mnist_c_mean, score, ood_auroc_held_out_mean,
                    ood_held_out_sets, ece_before, ece_after, temperature}
    notes          [text]: leaks and overlaps (S&P vs impulse_noise, OE source), provenance

Conventions (stated in ``results["convention"]``, see ``docs/CONVENTIONS.md``):

* OOD is the POSITIVE class; anomaly scores (``fastmix.evaluate.scores.SCORES``) are higher = more
  anomalous and are computed in float64 from the float32 logits.  Metrics are fractions.
* OOD detection per set and score: (a) the full OOD set against the whole ID test set and
  (b) the Outlier Exposure protocol (Hendrycks et al., ICLR 2019): mean and std over
  ``eval.n_draws`` draws of ``eval.n_ood`` OOD samples against all ID samples.
* ``seen_in_training`` is true iff the model was trained with Outlier Exposure and the OOD set
  has the same distribution family (``manifest.json``) as the OE source beton
  (``oe.source``).  The seed report used Fashion-MNIST both as the OE source and as a test set:
  those numbers are not held-out OOD detection.
* Calibration: temperature ``T`` fitted on the validation split (never on test; Guo et al.
  2017), ECE/MCE (15 equal-width bins), RMS (adaptive bins of 100), NLL and Brier on the test
  set before and after scaling.  Calibration with OOD (OE paper protocol: OOD samples count
  as wrong predictions) is computed PER OOD SET, with ``eval.n_ood`` OOD samples drawn once
  (seeded) against the whole test set, i.e. the OE protocol's 1:5 OOD:ID ratio on MNIST;
  ``held_out_mean`` averages ECE/MCE/RMS over the held-out sets only (a union would be
  dominated by whichever sets are largest, and seen sets would flatter OE models).

Inference precision (measured, see :func:`predict_logits`): fp32 with channels_last memory
on CPU by default; bf16 autocast is an opt-in (``precision="bf16"``, trunk in bf16, head in
float32) because it moved reported numbers by more than the differences the report compares.
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from fastmix.errors import ConfigError, DataError
from fastmix.evaluate.calibration import calibration_report, calibration_with_ood, fit_temperature
from fastmix.evaluate.metrics import error_detection_auroc, ood_metrics, ood_metrics_draws
from fastmix.evaluate.scores import SCORES
from fastmix.files import atomic_write
from fastmix.train.run_dir import LOGITS_FILE, RESULTS_FILE

__all__ = [
    "CONVENTION",
    "MNIST_C_CORRUPTIONS",
    "MNIST_C_PREFIX",
    "RESULTS_FORMAT",
    "EvalSets",
    "evaluate_run",
    "load_eval_sets",
    "load_logits",
    "load_results",
    "mnist_c_origin",
    "predict_logits",
    "seen_in_training",
]

RESULTS_FORMAT = 1
MNIST_C_PREFIX = "mnist_c/"

try:  # the generator's own list (same order); a fallback keeps evaluation importable alone
    from fastmix.converters.mnist_c import CORRUPTIONS as _CORRUPTIONS
except ImportError:  # pragma: no cover - only while converters/mnist_c.py is absent
    _CORRUPTIONS = (
        "shot_noise", "impulse_noise", "glass_blur", "motion_blur", "shear", "scale", "rotate",
        "brightness", "translate", "stripe", "fog", "spatter", "dotted_line", "zigzag",
        "canny_edges",
    )
MNIST_C_CORRUPTIONS: tuple[str, ...] = tuple(_CORRUPTIONS)

SCORE_TEXT = {
    "msp": "-max_k softmax(z)_k (Hendrycks & Gimpel 2017)",
    "xent": "mean_k z_k - logsumexp(z) (Outlier Exposure cross-entropy to uniform, 2019)",
    "energy": "-logsumexp(z), T = 1 (Liu et al. 2020)",
    "maxlogit": "-max_k z_k (Hendrycks et al. 2022)",
    "entropy": "-sum_k p_k log p_k (predictive entropy)",
}

CONVENTION: dict[str, Any] = {
    "positive_class": "ood",
    "text": "OOD is the positive class; anomaly scores are higher = more anomalous, computed in "
            "float64 from float32 logits; all metrics are fractions in [0, 1]",
    "text_scores": "anomaly scores are higher = more anomalous, computed in float64 from "
                   "float32 logits",
    "fpr95": "FPR on ID at the first (highest) threshold whose TPR on OOD reaches 0.95 "
             "(OpenOOD v1.5 / pytorch-ood rule; the OE repository takes the threshold whose "
             "recall is closest to 0.95: similar, not identical)",
    "aupr_in": "average precision with ID positive and the score negated",
    "aupr_out": "average precision with OOD positive",
    "full": "the whole OOD set against the whole ID test set",
    "draws": "Outlier Exposure protocol: mean and population std over n_draws draws of n_ood "
             "OOD samples (without replacement) against all ID test samples",
    "scores": SCORE_TEXT,
    "seen_in_training": "true iff the model used Outlier Exposure and the OOD set's family "
                        "(manifest.json) equals the family of the OE source beton",
    "calibration": "T fitted on the validation split by NLL; ECE/MCE with 15 equal-width bins, "
                   "RMS with adaptive bins of 100; with OOD: per OOD set, n_ood OOD samples "
                   "(drawn once, seeded) counted as wrong predictions",
}


# ----------------------------------------------------------------------------- small helpers


def _f(x: Any) -> float | None:
    """A JSON-safe float (None for NaN / inf)."""
    v = float(x)
    return v if np.isfinite(v) else None


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return _f(obj)
    return obj


def _accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.asarray(logits).argmax(axis=1) == labels))


# ----------------------------------------------------------------------------- data


class EvalSets(dict):
    """``name -> (images uint8 (N, 28, 28), labels int64 (N,))`` for one data directory.

    ``unavailable`` maps each requested but missing set to the reason; ``manifest`` is the data
    directory's ``manifest.json``.  Pass one instance (through ``sets_cache``) to several
    :func:`evaluate_run` calls so the betons are read once.
    """

    def __init__(self, data_dir: str | os.PathLike, manifest: dict[str, Any]) -> None:
        super().__init__()
        self.data_dir = Path(data_dir)
        self.manifest = manifest
        self.unavailable: dict[str, str] = {}

    def entry(self, name: str) -> dict[str, Any]:
        return self.manifest.get("betons", {}).get(name, {})


def load_eval_sets(
    data_dir: str | os.PathLike,
    names: Iterable[str],
    required: Iterable[str] = ("mnist_test", "mnist_val"),
    into: EvalSets | None = None,
) -> EvalSets:
    """Read the betons ``names`` of ``data_dir`` once through :func:`fastmix.converters.beton.read_beton`.

    A set is available when ``manifest.json`` lists it and its file exists.  Missing sets are
    recorded in ``.unavailable`` (name -> reason), except the ``required`` ones, which raise
    :class:`DataError` naming the folder and the fix.  ``into`` (an :class:`EvalSets` of the
    same folder) is filled in place and returned; sets already in it are not read again.
    """
    from fastmix.converters.beton import read_beton
    from fastmix.converters.build import MANIFEST, load_manifest, manifest_beton_path

    data_dir = Path(data_dir)
    required = tuple(required)
    if not data_dir.is_dir():
        raise DataError(
            f"{data_dir}: data folder not found; build it with `fastmix convert --out {data_dir}`"
            " or pass --data DIR"
        )
    if into is None:
        sets = EvalSets(data_dir, load_manifest(data_dir))
    else:
        if into.data_dir.resolve() != data_dir.resolve():
            raise ValueError(f"sets cache holds {into.data_dir}, not {data_dir}")
        sets = into
    names = list(dict.fromkeys([*required, *names]))
    for name in names:
        if name in sets or name in sets.unavailable:
            continue
        entry = sets.entry(name)
        path = manifest_beton_path(data_dir, name, entry) if entry else None
        if path is None:
            why = f"not in {MANIFEST}"
        elif not path.is_file():
            why = f"file {entry.get('file')} missing"
        else:
            why = ""
        if why:
            if name in required:
                raise DataError(
                    f"{data_dir}: required set {name} is unavailable ({why}); build it with "
                    f"`fastmix convert --out {data_dir}`"
                )
            sets.unavailable[name] = why
            continue
        images, labels = read_beton(path)
        if images.ndim != 3 or images.shape[1:] != (28, 28):
            raise DataError(f"{path}: expected 28x28 images, got shape {images.shape[1:]}")
        sets[name] = (images, labels)
    return sets


def mnist_c_origin(manifest: dict[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """Provenance of the MNIST-C betons ``names`` from their manifest ``meta``.

    Returns ``{"origin": "official" | "regenerated" | "mixed" | "unknown", "generator_version",
    "seed", "label"}``; ``label`` is the text reports print, e.g. ``"regenerated by fastmix
    (generator mnist-c-1), seed 0"`` or ``"official (Mu & Gilmer 2019, Zenodo 3239543)"``.
    """
    metas = [manifest.get("betons", {}).get(n, {}).get("meta", {}) or {} for n in names]
    origins = sorted({m.get("origin", "unknown") for m in metas}) or ["unknown"]
    versions = sorted({str(m["generator_version"]) for m in metas if "generator_version" in m})
    seeds = sorted({m["seed"] for m in metas if "seed" in m})
    origin = origins[0] if len(origins) == 1 else "mixed"
    version = versions[0] if len(versions) == 1 else (", ".join(versions) or None)
    seed = seeds[0] if len(seeds) == 1 else (seeds or None)
    if origin == "official":
        label = "official (Mu & Gilmer 2019, Zenodo 3239543)"
    elif origin == "regenerated":
        label = f"regenerated by fastmix (generator {version}), seed {seed}"
    elif origin == "mixed":
        label = f"mixed origins ({', '.join(origins)}): not comparable across corruptions"
    else:
        label = "unknown origin (manifest has no MNIST-C provenance)"
    return {"origin": origin, "generator_version": version, "seed": seed, "label": label}


def seen_in_training(
    cfg: dict[str, Any], set_name: str, manifest: dict[str, Any]
) -> tuple[bool, str]:
    """Whether OOD set ``set_name`` was seen in training, and why (see module docstring)."""
    betons = manifest.get("betons", {})
    family = betons.get(set_name, {}).get("family")
    oe = cfg.get("oe", {})
    if not oe.get("enabled", False):
        return False, "held out: model trained without Outlier Exposure"
    source = oe.get("source", "")
    src_family = betons.get(source, {}).get("family")
    if set_name == source:
        return True, f"seen: {set_name} is the Outlier Exposure source itself"
    if src_family is None:
        return False, (f"held out (family unknown): OE source {source} is not in the manifest, "
                       f"so its family cannot be compared with {set_name}'s ({family})")
    if family == src_family:
        return True, (f"seen in training: Outlier Exposure used {source} (family {src_family}),"
                      f" the same distribution family as {set_name}")
    return False, (f"held out: OE source {source} is family {src_family}, "
                   f"{set_name} is family {family}")


# ----------------------------------------------------------------------------- inference


def _no_tf32():
    """Context: cuDNN convolutions in true fp32. PyTorch lets cuDNN use TF32 (10-bit mantissa)
    for fp32 convolutions by default on Ampere and later GPUs; "fp32" inference means fp32.
    The other cuDNN flags keep their current values."""
    import torch

    c = torch.backends.cudnn
    return c.flags(enabled=c.enabled, benchmark=c.benchmark, deterministic=c.deterministic,
                   allow_tf32=False)


def resolve_inference(device: str = "auto", precision: str = "auto") -> tuple[str, str]:
    """``(device, precision)`` for inference.  ``device="auto"``: CUDA when present, else CPU.
    ``precision="auto"`` is fp32 on every device: bf16 moved the numbers this tool reports
    (see :func:`predict_logits`); ``"bf16"`` is an explicit opt-in for quick looks."""
    import torch

    from fastmix.runtime import check_device

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    else:
        try:
            check_device(device)
        except RuntimeError as e:  # torch.device's own message for a malformed string
            raise ConfigError(f"device {device!r}: {e}") from None
    if precision == "auto":
        precision = "fp32"
    if precision not in ("fp32", "bf16"):
        raise ConfigError(f"precision must be auto, fp32 or bf16, got {precision!r}")
    return device, precision


def predict_logits(
    model: Any,
    images: np.ndarray,
    batch_size: int = 1000,
    device: str = "cpu",
    precision: str = "auto",
) -> np.ndarray:
    """Float32 logits (N, C) of ``model`` on uint8 ``images`` (N, 28, 28), input ``images/255``.

    ``torch.inference_mode``; the model must be in eval mode.  Inputs and model use
    channels_last memory on CPU (and with bf16 on CUDA); the model is converted in place (same
    results, faster convolutions).  ``precision="bf16"`` runs the trunk
    (``forward_features``) under bf16 autocast and the head (``forward_head``: average pool +
    linear) in float32 on the upcast features, so the logits are not bf16-quantised (that
    would tie saturated MSP scores); a model without that split runs fully under autocast.
    Sets torch's thread count to the usable cores first (importing ffcv sets it to 1).

    Measured on the shared 2-core AMX-bf16 Xeon (ConvNet width 32, batch 1000, timings under
    load from other jobs, so ranges): 3,000 images fp32 contiguous 14-22 s, fp32
    channels_last 7-12 s (same numbers to float32 rounding) -> channels_last by default;
    10,000 MNIST test + 10,000 Fashion-MNIST images fp32 139-181 s, bf16 + channels_last
    40-47 s.  But on a briefly trained width-32 model (94.6% test accuracy) bf16 moved the
    logits by up to 0.23 (1.3% of max |z|), flipped the argmax of 0.54% of MNIST test and the
    FMNIST MSP / xent AUROCs by 0.005: material next to the 0.01-0.3 point differences the
    report compares.  Hence fp32 is the default and bf16 an explicit opt-in.
    """
    import torch

    device, precision = resolve_inference(device, precision)
    if device == "cpu":
        from fastmix.runtime import set_torch_threads

        set_torch_threads()  # the process's cores (affinity-aware), not the machine's
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(f"images must be uint8 (N, H, W), got {images.dtype} {images.shape}")
    bf16 = precision == "bf16"
    split = hasattr(model, "forward_features") and hasattr(model, "forward_head")
    cl = device == "cpu" or bf16
    fmt = torch.channels_last if cl else torch.contiguous_format
    model = model.to(device=device, memory_format=fmt)
    out: list[np.ndarray] = []
    dev_type = "cuda" if device.startswith("cuda") else "cpu"
    strict = _no_tf32() if dev_type == "cuda" and not bf16 else nullcontext()
    with torch.inference_mode(), strict:
        for i in range(0, len(images), int(batch_size)):
            xb = torch.from_numpy(np.ascontiguousarray(images[i:i + int(batch_size)]))
            xb = xb.to(device, non_blocking=True).unsqueeze(1).float().div_(255.0)
            if cl:
                xb = xb.contiguous(memory_format=torch.channels_last)
            if bf16:
                with torch.autocast(dev_type, dtype=torch.bfloat16):
                    z = model.forward_features(xb) if split else model(xb)
                z = model.forward_head(z.float()) if split else z
            else:
                z = model(xb)
            out.append(z.float().cpu().numpy())
    if not out:
        return np.zeros((0, 0), np.float32)
    return np.concatenate(out).astype(np.float32, copy=False)


# ----------------------------------------------------------------------------- evaluation


def _score_fns(names: list[str]) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    bad = [s for s in names if s not in SCORES]
    if bad:
        raise ConfigError(f"eval.scores: unknown score(s) {bad}; valid: {', '.join(SCORES)}")
    return {s: SCORES[s] for s in names}


def _notes(cfg: dict[str, Any], mnist_c: dict[str, Any], ood: dict[str, Any],
           manifest: dict[str, Any], unavailable: dict[str, str]) -> list[str]:
    notes = []
    aug = cfg.get("augment", {})
    if aug.get("kind") == "sp":
        notes.append(
            f"S&P training (amount {aug.get('sp_amount')}) overlaps MNIST-C impulse_noise "
            "(salt-and-pepper, amount 0.17): impulse_noise is not a held-out corruption for "
            "this model.")
    if aug.get("kind") == "pixmix":
        mix = cfg.get("data", {}).get("mixing", "fractals")
        fam = manifest.get("betons", {}).get(mix, {}).get("family", mix)
        same = [n for n, e in ood.items() if e["family"] == fam]
        if same:
            notes.append(f"PixMix mixing pictures ({mix}, family {fam}) share a family with "
                         f"OOD set(s) {', '.join(same)}.")
    if cfg.get("oe", {}).get("enabled"):
        seen = [n for n, e in ood.items() if e["seen_in_training"]]
        src = cfg["oe"].get("source")
        notes.append(
            f"Outlier Exposure source: {src}. "
            + (f"Seen in training (not held-out OOD): {', '.join(seen)}." if seen
               else "No evaluated OOD set shares its family."))
    if mnist_c.get("available") and mnist_c.get("origin") != "official":
        notes.append(f"MNIST-C is {mnist_c['origin_label']}: same corruptions and severities "
                     "as the official files, not the same pixels; compare across fastmix runs.")
    if not mnist_c.get("available"):
        notes.append("MNIST-C not available: build it with `fastmix convert` (mnist_c/*).")
    elif mnist_c.get("missing"):
        notes.append(f"MNIST-C incomplete: {len(mnist_c['missing'])} of 15 corruptions missing "
                     f"({', '.join(mnist_c['missing'])}); the mean is over the available ones.")
    if unavailable:
        notes.append("Unavailable sets (not evaluated): " + "; ".join(
            f"{n} ({why})" for n, why in unavailable.items()))
    return notes


def _draw_subset(n: int, k: int, seed: int) -> np.ndarray:
    if n <= k:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


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
) -> dict[str, Any]:
    """Evaluate ``<run_dir>/checkpoints/<which>.pt``; write results.json and logits.npz.

    ``data_dir`` defaults to the run config's ``data.dir``.  ``sets_cache``: a dict (initially
    empty) shared by several calls; it maps each resolved data folder to its
    :class:`EvalSets`, so each beton is read once.  ``seed`` drives the OE-protocol draws
    and the OOD subsample of the calibration-with-OOD check.  Returns the results dict
    (schema in the module docstring).  Raises DataError (missing run or data), ConfigError,
    or CheckpointError (missing or foreign checkpoint).
    """
    from fastmix.train.checkpoint import load_run

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: run directory not found")
    if which not in ("best", "last"):
        raise ConfigError(f"which must be best or last, got {which!r}")
    device, precision = resolve_inference(device, precision)  # refuse a missing GPU first
    t_start = time.perf_counter()
    model, cfg = load_run(run_dir, which)
    ev = cfg["eval"]
    score_fns = _score_fns(list(ev["scores"]))
    data_dir = Path(data_dir if data_dir is not None else cfg["data"]["dir"])
    test_name, val_name = cfg["data"]["test"], cfg["data"]["val"]
    mc_names = [MNIST_C_PREFIX + c for c in MNIST_C_CORRUPTIONS]
    ood_names = [n for n in ev["ood_sets"] if n not in (test_name, val_name)]
    key = str(data_dir.resolve()) if data_dir.is_dir() else str(data_dir)
    cache = sets_cache if sets_cache is not None else {}
    sets = load_eval_sets(data_dir, [*mc_names, *ood_names], required=(test_name, val_name),
                          into=cache.get(key))
    cache[key] = sets
    manifest = sets.manifest

    # ---- one forward pass per set
    bs = int(batch_size or ev["batch_size"])
    t0 = time.perf_counter()
    order = [test_name, val_name] + [n for n in (*mc_names, *ood_names) if n in sets]
    logits: dict[str, np.ndarray] = {}
    for name in order:
        logits[name] = predict_logits(model, sets[name][0], bs, device, precision)
    t_infer = time.perf_counter() - t0
    n_images = int(sum(len(sets[n][0]) for n in order))
    labels = {n: sets[n][1] for n in order}
    for n in [test_name, val_name, *mc_names]:
        if n in labels and (labels[n].min() < 0 or labels[n].max() >= logits[n].shape[1]):
            raise DataError(f"{data_dir}: set {n} must carry class labels, found "
                            f"[{labels[n].min()}, {labels[n].max()}]")

    z_test, y_test = logits[test_name], labels[test_name]
    z_val, y_val = logits[val_name], labels[val_name]
    test_acc = _accuracy(z_test, y_test)

    # ---- MNIST-C
    avail_mc = [n for n in mc_names if n in logits]
    per_c = {n[len(MNIST_C_PREFIX):]: _accuracy(logits[n], labels[n]) for n in avail_mc}
    mnist_c: dict[str, Any] = {"available": bool(avail_mc)}
    if avail_mc:
        prov = mnist_c_origin(manifest, avail_mc)
        mean_c = float(np.mean(list(per_c.values())))
        mnist_c.update(
            origin=prov["origin"], origin_label=prov["label"],
            generator_version=prov["generator_version"], seed=prov["seed"],
            per_corruption=per_c, mean=mean_c, drop=test_acc - mean_c,
            n_corruptions=len(avail_mc), complete=len(avail_mc) == len(mc_names),
            missing=[c for c in MNIST_C_CORRUPTIONS if c not in per_c],
        )
    else:
        mnist_c.update(missing=list(MNIST_C_CORRUPTIONS), complete=False, n_corruptions=0,
                       origin=None, origin_label="not available")

    # ---- OOD detection
    id_scores = {s: fn(z_test) for s, fn in score_fns.items()}
    ood: dict[str, Any] = {}
    for name in ood_names:
        if name not in logits:
            continue
        seen, reason = seen_in_training(cfg, name, manifest)
        entry = sets.entry(name)
        full, draws = {}, {}
        for s, fn in score_fns.items():
            o = fn(logits[name])
            full[s] = ood_metrics(id_scores[s], o)
            draws[s] = ood_metrics_draws(id_scores[s], o, n_ood=int(ev["n_ood"]),
                                         n_draws=int(ev["n_draws"]), seed=seed)
        ood[name] = {
            "family": entry.get("family"), "count": int(len(logits[name])),
            "seen_in_training": seen, "seen_reason": reason,
            "n_ood": int(min(ev["n_ood"], len(logits[name]))), "n_draws": int(ev["n_draws"]),
            "n_id": int(len(z_test)), "full": full, "draws": draws,
        }
    ood_unavailable = {n: sets.unavailable[n] for n in ood_names if n in sets.unavailable}

    # ---- error detection (wrong vs right on the test set)
    err: dict[str, Any] = {}
    err_note = None
    for s, fn in score_fns.items():
        try:
            err[s] = error_detection_auroc(z_test, y_test, fn)
        except ValueError as e:
            err[s] = None
            err_note = f"error detection undefined: {e}"

    # ---- calibration
    T = fit_temperature(z_val, y_val)
    cal: dict[str, Any] = {
        "temperature": T, "fitted_on": val_name, "evaluated_on": test_name,
        "test": {"before": calibration_report(z_test, y_test, 1.0),
                 "after": calibration_report(z_test, y_test, T)},
        "val": {"before": calibration_report(z_val, y_val, 1.0),
                "after": calibration_report(z_val, y_val, T)},
        "with_ood": {},
    }
    for name, e in ood.items():
        zo = logits[name][_draw_subset(len(logits[name]), int(ev["n_ood"]), seed)]
        cal["with_ood"][name] = {
            "seen_in_training": e["seen_in_training"], "n_ood": int(len(zo)),
            "before": calibration_with_ood(z_test, y_test, zo, 1.0),
            "after": calibration_with_ood(z_test, y_test, zo, T),
        }
    held = [n for n, e in ood.items() if not e["seen_in_training"]]
    if held:
        cal["with_ood_held_out_mean"] = {
            "sets": held,
            **{when: {m: float(np.mean([cal["with_ood"][n][when][m] for n in held]))
                      for m in ("ece", "mce", "rms")} for when in ("before", "after")},
        }

    # ---- summary (what `fastmix eval` prints)
    main_score = "msp" if "msp" in score_fns else next(iter(score_fns))
    summary = {
        "test_accuracy": test_acc,
        "mnist_c_mean": mnist_c.get("mean"),
        "score": main_score,
        "ood_auroc_held_out_mean": (float(np.mean([ood[n]["full"][main_score]["auroc"]
                                                   for n in held])) if held else None),
        "ood_held_out_sets": held,
        "ece_before": cal["test"]["before"]["ece"],
        "ece_after": cal["test"]["after"]["ece"],
        "temperature": T,
    }

    notes = _notes(cfg, mnist_c, ood, manifest, ood_unavailable)
    if err_note:
        notes.append(err_note)

    results = {
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
                      "images": n_images,
                      "seconds": round(t_infer, 3)},
        "data": {n: {"count": int(len(sets[n][0])), "family": sets.entry(n).get("family"),
                     "role": sets.entry(n).get("role"), "sha256": sets.entry(n).get("sha256")}
                 for n in order},
        "clean": {"test_accuracy": test_acc, "val_accuracy": _accuracy(z_val, y_val),
                  "n_test": int(len(y_test)), "n_val": int(len(y_val)),
                  "test_set": test_name, "val_set": val_name},
        "mnist_c": mnist_c,
        "ood": ood,
        "ood_unavailable": ood_unavailable,
        "error_detection": {"set": test_name, "positive": "wrong predictions",
                            "n_wrong": int(np.sum(z_test.argmax(1) != y_test)), "auroc": err},
        "calibration": cal,
        "summary": summary,
        "notes": notes,
    }
    results = _jsonable(results)
    results["seconds"] = round(time.perf_counter() - t_start, 3)

    buf = io.BytesIO()
    arrays = {f"logits/{n}": logits[n] for n in order}
    arrays.update({f"labels/{n}": labels[n].astype(np.int64) for n in order})
    np.savez_compressed(buf, **arrays)
    # results.json last, and the old one gone before the new logits land: a run directory
    # never holds a results.json beside logits it was not computed from
    (run_dir / RESULTS_FILE).unlink(missing_ok=True)
    atomic_write(run_dir / LOGITS_FILE, buf.getvalue())
    atomic_write(run_dir / RESULTS_FILE, json.dumps(results, indent=1, allow_nan=False) + "\n")
    return results


# ----------------------------------------------------------------------------- reading back


def load_results(run_dir: str | os.PathLike) -> dict[str, Any]:
    """``<run>/results.json``; DataError if missing or unreadable."""
    path = Path(run_dir) / RESULTS_FILE
    try:
        res = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: not found; run `fastmix eval {run_dir}` first") from None
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: unreadable ({e})") from None
    if not isinstance(res, dict) or res.get("format") != RESULTS_FORMAT:
        raise DataError(f"{path}: not a fastmix results file (format {RESULTS_FORMAT})")
    return res


def load_logits(run_dir: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``<run>/logits.npz`` as ``set name -> (logits float32 (N, C), labels int64 (N,))``."""
    path = Path(run_dir) / LOGITS_FILE
    if not path.is_file():
        raise DataError(f"{path}: not found; run `fastmix eval {run_dir}` first")
    with np.load(path) as z:
        names = [k[len("logits/"):] for k in z.files if k.startswith("logits/")]
        return {n: (z[f"logits/{n}"], z[f"labels/{n}"]) for n in names}
