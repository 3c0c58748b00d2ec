"""The post-hoc detectors of one evaluated run: fit, then score the test and OOD sets.

The feature detectors (:data:`fastmix.evaluate.detectors.FEATURE_DETECTORS`) are fit on the
penultimate features of a seeded training subset (:data:`TRAIN_SUBSET` images of
``data.train``) and the classifier head, and score the features ``fastmix eval`` stores
(float16, upcast to float64: every number can be recomputed from ``features.npz``). ODIN picks
its perturbation on in-distribution validation images and scores a seeded subset of at most
:data:`fastmix.evaluate.detectors.odin.MAX_IMAGES` images of the test set and of each OOD set.
Nothing is fit or chosen on OOD data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fastmix.evaluate.detectors import DETECTORS, FEATURE_DETECTORS, TrainingFeatures, odin
from fastmix.evaluate.sections import draw_subset
from fastmix.evaluate.sets import EvalSets

__all__ = ["FEATURE_DTYPE", "TRAIN_SUBSET", "DetectorScores", "run_detectors"]

TRAIN_SUBSET = 10_000  # training images whose features the detectors are fit on
FEATURE_DTYPE = np.float16  # stored features: half the bytes of float32; the rounding moves
# the detectors' AUROCs far less than seeds do (bench/detectors_cost.md)


@dataclass
class DetectorScores:
    """``scores[set][detector]``: anomaly scores; ``subsets[set][detector]``: how many samples
    of ``set`` a detector scored when that is a subset; ``info[detector]``: paper, what it was
    fit on, hyperparameters, seconds; ``unavailable[detector]``: why it was not evaluated."""

    scores: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    subsets: dict[str, dict[str, int]] = field(default_factory=dict)
    info: dict[str, dict[str, Any]] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)


def _odin(
    model: Any,
    sets: EvalSets,
    score_sets: list[str],
    val: str,
    seed: int,
    device: str,
    batch_size: int,
    desc: str,
    progress: bool,
    out: DetectorScores,
) -> None:
    t0 = time.perf_counter()
    val_x = sets[val][0][draw_subset(len(sets[val][0]), odin.VAL_IMAGES, seed)]
    eps, mean_s = odin.choose_epsilon(
        model,
        val_x,
        device=device,
        batch_size=batch_size,
        desc=f"{desc}: odin eps on {val}",
        progress=progress,
    )
    from fastmix.runtime import Workers, usable_cores

    def one(name: str):
        images = sets[name][0]
        pick = draw_subset(len(images), odin.MAX_IMAGES, seed)
        z = odin.perturbed_logits(model, images[pick], [eps], device=device, batch_size=batch_size)[
            eps
        ]
        return name, pick, len(images), z

    workers = Workers(len(usable_cores()) if device == "cpu" else 1, 1)
    try:  # one set per worker thread, one torch thread each (as the logits, fastmix.evaluate)
        done = workers.map(one, [(n,) for n in score_sets])
    finally:
        workers.close()
    for name, pick, n_images, z in done:
        out.scores.setdefault(name, {})["odin"] = odin.score(z)
        if len(pick) < n_images:
            out.subsets.setdefault(name, {})["odin"] = int(len(pick))
    out.info["odin"] = {
        "paper": odin.PAPER,
        "fit_on": f"{len(val_x)} seeded images of {val} (in-distribution only): eps with the "
        "largest mean S(x~; T) (Hsu et al. 2020)",
        "hyperparameters": {
            "temperature": odin.TEMPERATURE,
            "epsilon": eps,
            "epsilon_grid": list(odin.EPSILONS),
            "mean_val_score": {str(e): s for e, s in mean_s.items()},
            "images_per_set": odin.MAX_IMAGES,
            "subset_seed": seed,
        },
        "seconds": round(time.perf_counter() - t0, 3),
    }


def run_detectors(
    names: list[str],
    model: Any,
    train: TrainingFeatures | None,
    features: dict[str, np.ndarray],
    sets: EvalSets,
    score_sets: list[str],
    val: str,
    seed: int,
    *,
    train_set: str = "train",
    train_missing: str = "no training features",
    device: str = "cpu",
    batch_size: int = 500,
    desc: str = "eval",
    progress: bool = False,
) -> DetectorScores:
    """Scores of the detectors ``names`` on ``score_sets`` (the ID test set and the OOD sets).

    ``train``: training features, labels and head, for the feature detectors; ``features``:
    the stored features of every set in ``score_sets``; ``sets``: their images (ODIN); ``val``:
    the validation set ODIN chooses its perturbation on. Without ``train`` the feature
    detectors are recorded as unavailable (``train_missing`` says why)."""
    out = DetectorScores()
    for name in names:
        if name not in DETECTORS:
            raise ValueError(f"unknown detector {name!r}; valid: {', '.join(DETECTORS)}")
        if name == "odin":
            _odin(model, sets, score_sets, val, seed, device, batch_size, desc, progress, out)
            continue
        if train is None:
            out.unavailable[name] = train_missing
            continue
        t0 = time.perf_counter()
        mod = FEATURE_DETECTORS[name]
        fitted = mod.fit(train)
        for s in score_sets:
            out.scores.setdefault(s, {})[name] = mod.score(fitted, features[s])
        out.info[name] = {
            "paper": mod.PAPER,
            "fit_on": f"penultimate features of {len(train.features)} seeded images of "
            f"{train_set} (seed {seed})"
            + (" and the classifier head" if "head" in mod.uses else ""),
            "hyperparameters": mod.hyperparameters(fitted),
            "uses": mod.kind,
            "seconds": round(time.perf_counter() - t0, 3),
        }
    return out
