"""fastmix: MNIST robustness, OOD detection and calibration with PixMix, salt-and-pepper noise and
Outlier Exposure, trained from FFCV betons with the augmentation in Numba kernels.

The pipeline, one subpackage per stage; each stage hands the next one files:

    fastmix.converters  raw sources (IDX, zips, generated) -> validated .beton files +
                        manifest.json                                   (fastmix convert)
    fastmix.augment     the Numba kernels: PixMix, its Pillow-exact ops, salt-and-pepper
    fastmix.data        FFCV loaders that run those kernels; the training streams
    fastmix.train       models, Outlier Exposure loss, the trainer (every run of a job in one
                        job: a worker process per core, the CUDA step as a graph), run
                        directories and checkpoints                        (fastmix train)
    fastmix.evaluate    accuracy, MNIST-C, OOD detection (logit scores and post-hoc
                        detectors), calibration -> results.json          (fastmix eval)
    fastmix.report      report.md and plots from evaluated runs           (fastmix report)
    fastmix.cli         the ``fastmix`` command, the only place that wires the stages together
    fastmix.bench       throughput beside the baselines users would otherwise run
                                                                          (fastmix bench)
    fastmix.configs     the TOML presets, read by fastmix.config

``fastmix.converters``, ``fastmix.bench`` and ``fastmix.configs`` are the repository's
``converters/``, ``bench/`` and ``configs/`` folders. Shared by every stage: ``fastmix.config``
(presets and typed overrides), ``fastmix.errors``, ``fastmix.files`` (atomic writes, folder
locks), ``fastmix.rng`` (counter-based splitmix64) and ``fastmix.runtime`` (device, precision,
cores). Conventions: ``docs/CONVENTIONS.md`` in the repository.

The public API (imported on first use, so ``import fastmix`` stays cheap):

    fastmix.evaluate_model(model, data, *, out=None, ...)   any nn.Module -> results.json
    fastmix.train(variant, data, *, out="runs", seeds=1, ...) -> run directories
    fastmix.report(runs, *, out, ...)                          -> report.md
    fastmix.load_config(variant, presets, overrides)           a resolved, checked config
    fastmix.register_model / register_augmentation / Param / register_detector /
    register_loss / register_variant                           one new file adds one of each
    fastmix.load_plugins(modules)                              what --plugin does
    fastmix.derive_seed(seed, purpose, *parts)                 every random stream's seed
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "evaluate_model": "fastmix.evaluate.external",
    "FeatureModel": "fastmix.evaluate.external",
    "load_config": "fastmix.config",
    "register_variant": "fastmix.config",
    "register_model": "fastmix.train.models",
    "register_augmentation": "fastmix.augment.kinds",
    "Param": "fastmix.augment.kinds",
    "register_detector": "fastmix.evaluate.detectors",
    "TrainingFeatures": "fastmix.evaluate.detectors",
    "register_loss": "fastmix.train.losses",
    "load_plugins": "fastmix.registry",
    "RegistryError": "fastmix.registry",
    "derive_seed": "fastmix.rng",
}
__all__ = ["evaluate_model", "report", "train", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in ("train", "report"):  # the subpackages, callable (fastmix.api)
        return importlib.import_module(f"fastmix.{name}")
    if name in _EXPORTS:
        if name == "register_augmentation" or name == "Param":
            importlib.import_module("fastmix.augment.spec")  # the built-in kinds first
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'fastmix' has no attribute {name!r}")
