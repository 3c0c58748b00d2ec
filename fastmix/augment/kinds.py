"""The augmentation-kind registry: each kind declares its Numba kernel, its parameters with
their ranges, and its seed tag.

A kind is registered with :func:`register_augmentation` (``fastmix.register_augmentation``) in
the module that holds its kernel. The kernel is a ``parallel=True`` Numba batch kernel called as
``kernel(images, indices, out, seed, epoch, *values)``: uint8 ``images`` (B, H, W), int64
dataset ``indices`` (B,), float32 ``out`` (B, H, W) in [0, 1] to fill, the view's per-sample
seed (``derive_seed(train.seed, "view", seed_tag)``), the epoch, then the parameter values in
declaration order; a sample's draws should come from ``fastmix.rng.sample_state(seed, epoch,
index)``, so they do not depend on the batch or the thread. A kind with another calling
convention (PixMix: the mixing bank) passes ``call``.

Each parameter is a config key of ``[augment]`` (its name, e.g. ``sp_amount``) with its range
declared once here (:class:`Param`); config validation, ``Augmentation`` and the CLI read it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fastmix.errors import ConfigError
from fastmix.registry import Registry
from fastmix.schema import Range

__all__ = ["AUGMENTATIONS", "AugmentationKind", "Param", "register_augmentation"]


@dataclass(frozen=True)
class Param:
    """One parameter: its ``default`` (its type is the parameter's: bool, int or float) and
    its range ``[lo, hi]`` (``None``: unbounded; ``lo_open`` / ``hi_open``: that end
    excluded)."""

    default: bool | int | float
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    help: str = ""

    @property
    def range(self) -> Range:
        return Range(self.lo, self.hi, self.lo_open, self.hi_open)

    def check(self, where: str, value: Any) -> bool | int | float:
        """``value`` as the parameter's type; ConfigError naming ``where`` if it is not one or
        lies outside the range."""
        if isinstance(self.default, bool):
            if not isinstance(value, (bool, np.bool_)):
                raise ConfigError(f"{where} must be true or false, got {value!r}")
            return bool(value)
        integer = isinstance(self.default, int)
        number = (int, float, np.integer, np.floating)
        if isinstance(value, bool) or not isinstance(value, number):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        if integer and not (isinstance(value, (int, np.integer)) or float(value).is_integer()):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        v = int(value) if integer else float(value)
        self.range.check(where, v)
        return v


@dataclass(frozen=True)
class AugmentationKind:
    """One registered kind (module docstring). ``call(images, indices, out, seed, epoch,
    augmentation, bank, launch)`` replaces the default kernel call, where ``launch(kernel,
    task_iterations, *args)`` runs a prange kernel load-balanced; ``task_iterations``: prange
    iterations per scheduled task; ``needs_bank``: the view needs the PixMix mixing pictures
    (``data.mixing``)."""

    name: str
    kernel: Callable[..., Any] | None
    params: dict[str, Param] = field(default_factory=dict)
    seed_tag: str = ""
    needs_bank: bool = False
    random: bool = True
    task_iterations: int = 32
    call: Callable[..., Any] | None = None
    builtin: bool = False


AUGMENTATIONS: Registry[AugmentationKind] = Registry("augmentation")


def register_augmentation(
    name: str,
    *,
    kernel: Callable[..., Any] | None,
    params: dict[str, Param] | None = None,
    seed_tag: str | None = None,
    needs_bank: bool = False,
    random: bool = True,
    task_iterations: int = 32,
    call: Callable[..., Any] | None = None,
) -> AugmentationKind:
    """Register the augmentation kind ``name`` (``augment.kind = name``); ``seed_tag``
    (default: the name) separates its views' random streams from every other kind's. A
    parameter name already declared by another kind is refused (config keys are shared)."""
    params = dict(params or {})
    for p in params:
        owner = next((k.name for k in AUGMENTATIONS.values() if p in k.params), None)
        if owner is not None or p == "kind":
            raise ConfigError(
                f"augmentation {name!r}: parameter {p!r} is already augment.{p} of {owner!r}"
            )
    module = getattr(kernel or call, "__module__", "") or ""
    kind = AugmentationKind(
        name,
        kernel,
        params,
        seed_tag or name,
        needs_bank,
        random,
        task_iterations,
        call,
        module.startswith("fastmix."),
    )
    return AUGMENTATIONS.register(name, kind, module)


def all_params() -> dict[str, Param]:
    """Every registered kind's parameters (the valid ``[augment]`` keys besides ``kind``)."""
    return {p: v for k in AUGMENTATIONS.values() for p, v in k.params.items()}
