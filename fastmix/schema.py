"""The typed config schema: one frozen dataclass per section, each setting's range declared once.

The values (and their comments) live in ``configs/default.toml``; this module declares each
setting's type and range (:func:`setting`) and the checks that span settings or read a
registry (a model, a training loss, a score or detector, an augmentation's parameters).
:func:`check_config` builds every section from a resolved config dict, so every fault is a
ConfigError naming the setting before anything is written; the dict stays what the rest of
fastmix reads.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Any

from fastmix.errors import ConfigError
from fastmix.train.schedule import SCHEDULES

__all__ = ["SECTIONS", "Range", "check_config", "setting"]


@dataclass(frozen=True)
class Range:
    """An allowed range ``[lo, hi]`` (``None``: unbounded; ``*_open``: that end excluded) or a
    set of ``choices``; :meth:`check` raises a ConfigError that names the setting."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple[str, ...] | None = None

    def text(self) -> str:
        if self.choices is not None:
            return f"be one of {', '.join(self.choices)}"
        if self.lo is not None and self.hi is not None:
            a, b = "(" if self.lo_open else "[", ")" if self.hi_open else "]"
            return f"lie in {a}{self.lo:g}, {self.hi:g}{b}"
        if self.lo is not None:
            return f"be {'>' if self.lo_open else '>='} {self.lo:g}"
        if self.hi is not None:
            return f"be {'<' if self.hi_open else '<='} {self.hi:g}"
        return "be any value"

    def contains(self, v: Any) -> bool:
        if self.choices is not None:
            return v in self.choices
        lo_ok = self.lo is None or (v > self.lo if self.lo_open else v >= self.lo)
        hi_ok = self.hi is None or (v < self.hi if self.hi_open else v <= self.hi)
        return lo_ok and hi_ok

    def check(self, where: str, v: Any) -> None:
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"{where} must be a finite number, got {v}")
        if not self.contains(v):
            raise ConfigError(f"{where} must {self.text()}, got {v!r}")


def setting(
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
    choices: tuple[str, ...] | None = None,
) -> Any:
    """A dataclass field with its range (the one place it is declared)."""
    return field(metadata={"range": Range(lo, hi, lo_open, hi_open, choices)})


def _check_type(where: str, hint: Any, v: Any) -> Any:
    if hint is bool:
        ok = isinstance(v, bool)
    elif hint is int:
        ok = isinstance(v, int) and not isinstance(v, bool)
    elif hint is float:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool)
        v = float(v) if ok else v
    elif hint is str:
        ok = isinstance(v, str)
    else:  # list[str]
        ok = isinstance(v, list) and all(isinstance(x, str) for x in v)
    if not ok:
        what = {bool: "true/false", int: "an integer", float: "a number", str: "a string"}
        raise ConfigError(f"{where} must be {what.get(hint, 'a list of strings')}, got {v!r}")
    return v


class _Section:
    """Type and range checks of every field, then the section's own ``_check``."""

    SECTION = ""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            where = f"{self.SECTION}.{f.name}"
            v = _check_type(where, hints[f.name], getattr(self, f.name))
            object.__setattr__(self, f.name, v)
            if "range" in f.metadata:
                f.metadata["range"].check(where, v)
        self._check()

    def _check(self) -> None:
        pass


@dataclass(frozen=True)
class DataSection(_Section):
    SECTION = "data"
    dir: str
    train: str
    val: str
    test: str
    corrupted: str
    family_shift: bool
    mixing: str
    num_workers: int = setting(1)

    def _check(self) -> None:
        from fastmix.config import known_beton_names

        prefixes = sorted({n.split("/")[0] for n in known_beton_names() if "/" in n})
        if self.corrupted not in prefixes:
            raise ConfigError(
                f"data.corrupted: unknown -C set {self.corrupted!r}; valid: {', '.join(prefixes)}"
            )


@dataclass(frozen=True)
class ModelSection(_Section):
    SECTION = "model"
    name: str
    width: int = setting(1)

    def _check(self) -> None:
        from fastmix.train.models import MODELS

        if self.name not in MODELS:
            raise ConfigError(MODELS.unknown(self.name, "model.name"))


@dataclass(frozen=True)
class OESection(_Section):
    SECTION = "oe"
    enabled: bool
    source: str
    lambda_: float = setting(0)
    ratio: int = setting(1)


@dataclass(frozen=True)
class TrainSection(_Section):
    SECTION = "train"
    epochs: int = setting(1)
    batch_size: int = setting(1)
    lr: float = setting(0, lo_open=True)
    schedule: str = setting(choices=SCHEDULES)
    lr_min: float = setting(0)
    momentum: float = setting(0, 1, hi_open=True)
    weight_decay: float = setting(0)
    warmup_frac: float = setting(0, 1, hi_open=True)
    label_smoothing: float = setting(0, 1, hi_open=True)
    seed: int = setting(0)
    max_steps: int = setting(0)
    device: str
    precision: str = setting(choices=("auto", "fp32", "bf16"))
    channels_last: str = setting(choices=("auto", "on", "off"))
    compile: str = setting(choices=("auto", "on", "off"))
    cuda_graphs: str = setting(choices=("auto", "on", "off"))
    workers: int = setting(0)
    log_every: int = setting(1)
    ckpt_every: int = setting(0)
    loss: str

    def _check(self) -> None:
        from fastmix.train.losses import LOSSES

        d = self.device
        if d not in ("auto", "cpu", "cuda") and not (d.startswith("cuda:") and d[5:].isdigit()):
            raise ConfigError(f"train.device must be auto, cpu or cuda[:N], got {d!r}")
        if not 0 <= self.lr_min <= self.lr:
            raise ConfigError(f"train.lr_min must lie in [0, train.lr], got {self.lr_min}")
        if self.loss != "auto" and self.loss not in LOSSES:
            raise ConfigError(LOSSES.unknown(self.loss, "train.loss") + ", auto")


@dataclass(frozen=True)
class EvalSection(_Section):
    SECTION = "eval"
    batch_size: int = setting(1)
    ood_sets: list[str]
    scores: list[str]
    n_ood: int = setting(1)
    n_draws: int = setting(1)
    features: bool

    def _check(self) -> None:
        from fastmix.config import known_beton_names
        from fastmix.evaluate.detectors import DETECTORS
        from fastmix.evaluate.scores import SCORES

        unknown = [n for n in self.ood_sets if n not in known_beton_names()]
        if unknown:
            valid = ", ".join(n for n in known_beton_names() if "/" not in n)
            raise ConfigError(
                f"eval.ood_sets: unknown set(s) {', '.join(map(repr, unknown))}; valid: {valid}, "
                "or a corrupted set such as mnist_c/fog or fmnist_c/fog"
            )
        bad = [s for s in self.scores if s not in SCORES and s not in DETECTORS]
        if bad:
            raise ConfigError(
                f"eval.scores: unknown score(s) {', '.join(map(repr, bad))}; valid: "
                f"{', '.join([*SCORES, *DETECTORS])}"
            )


SECTIONS = {
    "data": DataSection,
    "model": ModelSection,
    "oe": OESection,
    "train": TrainSection,
    "eval": EvalSection,
}


def _build(cls: type, values: dict[str, Any]) -> Any:
    names = {f.name.rstrip("_"): f.name for f in dataclasses.fields(cls)}
    missing = [k for k in names if k not in values]
    if missing:
        raise ConfigError(f"[{cls.SECTION}]: missing setting(s) {', '.join(missing)}")
    return cls(**{names[k]: v for k, v in values.items() if k in names})


def check_config(cfg: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Every section of ``cfg`` as its typed, checked dataclass (``augment``: a
    :class:`~fastmix.augment.spec.Augmentation`, its ranges from the kind registry)."""
    from fastmix.augment.kinds import all_params
    from fastmix.augment.spec import Augmentation

    typed: dict[str, Any] = {name: _build(cls, cfg[name]) for name, cls in SECTIONS.items()}
    typed["augment"] = Augmentation.from_config(cfg["augment"])
    params = all_params()
    for key, value in cfg["augment"].items():  # the other kinds' settings too: none is ignored
        if key in params:
            params[key].check(f"augment.{key}", value)
    return typed
