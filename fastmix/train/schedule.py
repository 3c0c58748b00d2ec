"""Learning-rate schedules, set every step from the global step (so a resumed run follows the
same schedule).

* ``onecycle``: linear warm-up from 0 to the peak ``lr`` over ``warmup_frac`` of the steps, then
  linear decay to 0 (the triangular one-cycle schedule of airbench; Smith & Topin 2017).
* ``cosine``: ``lr_min + (lr - lr_min) (1 + cos(pi (step + 1) / total)) / 2``, the Outlier
  Exposure paper's schedule (hendrycks/outlier-exposure ``MNIST/baseline.py``: ``LambdaLR`` with
  ``cosine_annealing`` down to 1e-6, stepped before each optimiser step, hence ``step + 1``).
"""

from __future__ import annotations

import math

SCHEDULES = ("onecycle", "cosine")


def lr_at(
    step: int,
    total: int,
    peak: float,
    schedule: str = "onecycle",
    warmup_frac: float = 0.2,
    lr_min: float = 0.0,
) -> float:
    """The learning rate of (0-based) ``step`` of ``total``."""
    if schedule == "cosine":
        return lr_min + (peak - lr_min) * 0.5 * (1.0 + math.cos(math.pi * (step + 1) / total))
    if schedule != "onecycle":
        raise ValueError(f"unknown schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")
    warm = max(1, int(round(warmup_frac * total)))
    if step < warm:
        return peak * (step + 1) / warm
    return peak * max(0.0, (total - step) / max(1, total - warm))
