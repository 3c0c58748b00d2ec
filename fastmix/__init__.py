"""fastmix: MNIST robustness, OOD detection and calibration with PixMix, salt-and-pepper noise and
Outlier Exposure, trained from FFCV betons with the augmentation in Numba kernels.

The pipeline, one subpackage per stage; each stage hands the next one files:

    fastmix.converters  raw sources (IDX, zips, generated) -> validated .beton files +
                        manifest.json                                   (fastmix convert)
    fastmix.augment     the Numba kernels: PixMix, its Pillow-exact ops, salt-and-pepper
    fastmix.data        FFCV loaders that run those kernels; the training streams
    fastmix.train       models, Outlier Exposure loss, the trainer (every run of a job in one
                        process), run directories and checkpoints          (fastmix train)
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
"""
